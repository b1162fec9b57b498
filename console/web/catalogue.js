// Catalogue: edit the defect kinds (name, prompts, negative prompt, weight, masks),
// upload a mask or paint one on a pooled good frame, and save through the daemon's
// own validation. The save names the version of the file it was made on, so an edit
// made on disk meanwhile is never overwritten.
import { api, APIError, can, el, toast } from './app.js';
import { paintMask } from './paint.js';

let doc = null;
let kinds = []; // editable copies
let uid = 0;

export async function show() {
  try {
    load(await api('/api/catalogue'));
  } catch (e) {
    document.getElementById('kinds').replaceChildren(el('div', { class: 'empty-state' }, e.message));
    document.getElementById('save-cat').disabled = true;
    document.getElementById('add-kind').disabled = true;
  }
}

function load(d) {
  doc = d;
  kinds = d.kinds.map((k) => ({
    index: k.index, name: k.name, prompts: k.prompts.slice(), negativePrompt: k.negativePrompt, weight: k.weight,
    masks: k.masks.map((m) => ({ path: m.path, files: m.files, thumb: m.first >= 0 ? `/api/catalogue/masks/${k.index}/${m.first}` : '' })),
    regions: k.regions || [], extra: k.extra || [], problems: k.problems || [],
  }));
  render();
  showProblems(d.problems && d.problems.length ? 'The file on disk does not validate:' : '', d.problems || []);
}

function inForceText(f) {
  if (f.problem) return `diagd has no catalogue in force: ${f.problem}`;
  if (!f.digest) return 'diagd has not loaded a catalogue yet.';
  const same = doc.digest && f.digest === doc.digest;
  return `In force in diagd: version ${f.digest.slice(0, 12)}${same ? ' (this file, loaded)' : doc.digest ? ' — not this file yet' : ''}.`;
}

function render() {
  const may = can('technician');
  document.getElementById('cat-status').textContent = `${doc.file} · ${inForceText(doc.inForce)}`;
  document.getElementById('cat-text').textContent = doc.text;
  document.getElementById('save-cat').disabled = !may;
  const add = document.getElementById('add-kind');
  add.disabled = !may;
  add.onclick = () => {
    kinds.push({ index: -1, name: '', prompts: [], negativePrompt: '', weight: 1, masks: [], regions: [], extra: [], problems: [] });
    render();
    document.getElementById(`${kinds[kinds.length - 1].uid}-name`).focus();
  };
  document.getElementById('cat-form').onsubmit = (e) => { e.preventDefault(); save(); };
  document.getElementById('kinds').replaceChildren(...kinds.map((k, i) => kindCard(k, i, may)));
}

function kindCard(k, i, may) {
  k.uid = `k${++uid}`;
  const id = (s) => `${k.uid}-${s}`;
  const title = el('h2', {}, `Kind ${i + 1}: ${k.name || '(new)'}`);
  const name = el('input', { type: 'text', id: id('name'), value: k.name, required: true, disabled: !may,
    oninput: (e) => { k.name = e.target.value; title.textContent = `Kind ${i + 1}: ${k.name || '(new)'}`; } });
  const prompts = el('textarea', { id: id('prompts'), rows: 3, disabled: !may, oninput: (e) => { k.prompts = lines(e.target.value); } });
  prompts.value = k.prompts.join('\n');
  const neg = el('input', { type: 'text', id: id('neg'), value: k.negativePrompt, placeholder: doc.global.negativePrompt || 'the catalogue’s default', disabled: !may,
    oninput: (e) => { k.negativePrompt = e.target.value; } });
  const weight = el('input', { type: 'number', id: id('weight'), value: k.weight, step: 'any', disabled: !may,
    oninput: (e) => { k.weight = e.target.value === '' ? NaN : Number(e.target.value); } });
  const masks = el('ul', { class: 'masks', 'aria-label': `Masks of kind ${i + 1}` }, ...k.masks.map((m, j) => el('li', {},
    m.thumb ? el('img', { src: m.thumb, alt: `Mask ${m.path}` }) : null,
    el('div', { class: 'path', title: m.path }, m.path.split('/').slice(-2).join('/'), m.files > 1 ? ` (${m.files} files)` : ''),
    el('button', { type: 'button', class: 'small', disabled: !may, onclick: () => { k.masks.splice(j, 1); render(); } }, `Remove mask ${j + 1}`))));
  const upload = el('input', { type: 'file', id: id('upload'), accept: 'image/png,image/jpeg', disabled: !may,
    onchange: async (e) => { const f = e.target.files[0]; if (f) await addMask(k, f, URL.createObjectURL(f)); } });
  return el('article', { class: 'kind' + (k.problems.length ? ' invalid' : ''), 'data-kind': i, 'aria-labelledby': id('h') },
    el('header', {}, Object.assign(title, { id: id('h') }),
      el('button', { type: 'button', disabled: !may, onclick: () => { kinds.splice(i, 1); render(); } }, `Remove kind ${i + 1}`)),
    k.problems.length ? el('div', { class: 'problems' }, el('ul', {}, ...k.problems.map((p) => el('li', {}, el('code', {}, p))))) : null,
    el('div', { class: 'grid' },
      el('div', {},
        el('label', { for: id('name') }, 'Name'), name,
        el('label', { for: id('prompts') }, 'Prompts (one per line)'), prompts,
        el('label', { for: id('neg') }, 'Negative prompt (empty: the catalogue’s default)'), neg),
      el('div', {},
        el('label', { for: id('weight') }, 'Weight (how often, relative to the others)'), weight,
        k.regions.length ? el('p', { class: 'muted' }, 'Regions: ' + k.regions.join(', ')) : null,
        ...k.extra.map((x) => el('p', { class: 'muted' }, `${x.key}: ${x.value}`)))),
    el('h3', {}, 'Masks (the defect’s shape)'), masks,
    el('div', { class: 'actions' },
      el('label', { for: id('upload') }, 'Upload a mask image'), upload,
      el('button', { type: 'button', class: 'paint-mask', disabled: !may, onclick: () => paint(k) }, 'Paint a mask on a good frame…')));
}

const lines = (s) => s.split('\n').map((x) => x.trim()).filter((x) => x);

async function addMask(k, blob, preview) {
  const fd = new FormData();
  fd.append('kind', k.name);
  fd.append('mask', blob, 'mask.png');
  try {
    const r = await api('/api/catalogue/masks', { method: 'POST', body: fd });
    k.masks.push({ path: r.path, files: 1, thumb: preview });
    render();
    toast(`Mask stored as ${r.path}; save the catalogue to use it.`);
  } catch (e) {
    toast('Mask not stored: ' + e.message, true);
  }
}

async function paint(k) {
  let frames;
  try {
    frames = await api('/api/goodframes');
  } catch (e) { toast(e.message, true); return; }
  if (!frames.length) { toast('No good frames pooled yet (DIAGD_NEGATIVES_KEEP).', true); return; }
  const r = await paintMask({ title: `Paint a mask for ${k.name || 'the new kind'}`,
    frames: frames.map((f) => ({ url: `/api/goodframes/${f.id}`, label: f.id })) });
  if (r && r.blob) await addMask(k, r.blob, URL.createObjectURL(r.blob));
}

function showProblems(head, problems, conflict = false) {
  const box = document.getElementById('cat-problems');
  if (!problems.length && !head) { box.hidden = true; box.replaceChildren(); return; }
  box.hidden = false;
  box.replaceChildren(...[el('strong', {}, head),
    el('ul', {}, ...problems.map((p) => el('li', {}, el('code', {}, p)))),
    conflict ? el('button', { type: 'button', onclick: show }, 'Reload the file') : null].filter((x) => x));
}

async function save() {
  const edit = { hash: doc.hash, kinds: kinds.map((k) => ({ index: k.index, name: k.name, prompts: k.prompts,
    negativePrompt: k.negativePrompt, weight: Number.isFinite(k.weight) ? k.weight : -1, masks: k.masks.map((m) => m.path) })) };
  try {
    load(await api('/api/catalogue', { method: 'POST', body: edit }));
    toast('Saved. diagd reloads it now.');
    showProblems('', []);
    waitReload(doc.digest);
  } catch (e) {
    if (!(e instanceof APIError)) { toast(e.message, true); return; }
    if (e.status === 422) {
      for (const k of kinds) k.problems = [];
      for (const [i, ps] of Object.entries(e.body.byKind || {})) if (kinds[i]) kinds[i].problems = ps;
      render();
      showProblems('Not saved: the catalogue would be invalid. Nothing was changed.', e.body.problems || [e.message]);
    } else if (e.status === 409) {
      showProblems('Not saved: ' + e.message, [], true);
    } else {
      showProblems('Not saved: ' + e.message, []);
    }
  }
}

// waitReload polls until the daemon reports the saved version in force.
async function waitReload(digest) {
  const status = document.getElementById('cat-status');
  for (let i = 0; i < 30 && digest; i++) {
    const d = await api('/api/catalogue').catch(() => null);
    if (d && d.inForce.digest === digest) {
      doc.inForce = d.inForce;
      status.textContent = `${doc.file} · ${inForceText(d.inForce)}`;
      status.dataset.reloaded = digest;
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
