// Fails: the last failed frames, to be marked "actually good" or "confirmed defect"
// (with a painted mask when the defect can be seen).
import { api, can, el, fmtScore, fmtTime, toast } from './app.js';
import { paintMask } from './paint.js';

const STEP = 30; // frames shown at first, and per "show more"
let shown = STEP;

export async function show() {
  const box = document.getElementById('fails');
  let list;
  try {
    list = await api('/api/fails');
  } catch (e) {
    box.replaceChildren(el('div', { class: 'empty-state' }, 'Cannot load failed frames: ' + e.message));
    return;
  }
  if (!list.length) {
    box.replaceChildren(el('div', { class: 'empty-state' }, 'No failed frames kept yet.'));
    return;
  }
  const rest = list.length - shown;
  box.replaceChildren(...list.slice(0, shown).map(card),
    rest > 0 ? el('button', { type: 'button', class: 'more', onclick: () => { shown += STEP; show(); } }, `Show ${Math.min(rest, STEP)} more of ${rest}`) : '');
}

function card(f) {
  const img = `/api/fails/${encodeURIComponent(f.id)}/image`;
  const mayLabel = can('operator');
  const label = f.label
    ? el('span', { class: 'badge ' + (f.label === 'good' ? 'pass' : 'fail') }, f.label === 'good' ? 'Marked good' : 'Confirmed defect')
    : el('span', { class: 'badge unknown' }, 'Not labelled');
  return el('article', { class: 'card' + (f.label ? ' labelled' : ''), 'aria-label': `Failed frame ${f.camera} ${fmtTime(f.time)}`, 'data-id': f.id },
    el('img', { src: img, alt: `Failed frame from ${f.camera} at ${fmtTime(f.time)}`, loading: 'lazy', width: f.width, height: f.height }),
    el('div', { class: 'row' },
      el('span', { class: 'big v-fail', title: `threshold ${fmtScore(f.threshold)}` }, fmtScore(f.score)),
      label),
    el('div', { class: 'row muted' },
      el('span', {}, `${f.camera} · ${fmtTime(f.time)}`),
      el('span', {}, `model ${f.modelVersion || '?'}`)),
    (f.partId || f.frameId) ? el('div', { class: 'row muted' }, [f.partId ? `part ${f.partId}` : '', f.frameId ? `file ${f.frameId}` : ''].filter((x) => x).join(' · ')) : null,
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'good', disabled: !mayLabel, onclick: () => label_(f, 'good') }, 'Actually good'),
      el('button', { type: 'button', class: 'bad', disabled: !mayLabel, onclick: () => confirmDefect(f, img) }, 'Confirmed defect…')));
}

async function confirmDefect(f, img) {
  const r = await paintMask({ src: img, title: `Where is the defect? (${f.camera}, ${fmtTime(f.time)})`, skip: 'File without a mask' });
  if (r === null) return;
  await label_(f, 'defect', r === 'skip' ? null : r.blob);
}

async function label_(f, label, mask) {
  const fd = new FormData();
  fd.append('label', label);
  if (mask) fd.append('mask', mask, 'mask.png');
  try {
    const out = await api(`/api/fails/${encodeURIComponent(f.id)}/label`, { method: 'POST', body: fd });
    toast(`Filed as ${label}: ${out.filed.join(', ')}`);
    show();
  } catch (e) {
    toast('Not filed: ' + e.message, true);
  }
}
