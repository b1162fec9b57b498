// Models and jobs: the registry's versions with their scores, recipe and PR curve;
// promote and rollback; start augment, retrain or a cycle and follow its progress.
import { api, can, el, fmtTime, toast } from './app.js';

let timer = null;

export async function show() {
  renderJobs();
  await renderModels();
  clearInterval(timer);
  timer = setInterval(refreshJob, 1000);
}

export function hide() { clearInterval(timer); timer = null; }

const num = (x) => (typeof x === 'number' ? x.toFixed(4) : '–');

async function renderModels() {
  let m;
  try {
    m = await api('/api/models');
  } catch (e) { toast('Cannot load the registry: ' + e.message, true); return; }
  const may = can('technician');
  const probs = document.getElementById('models-problems');
  probs.hidden = !(m.problems && m.problems.length);
  probs.replaceChildren(el('ul', {}, ...(m.problems || []).map((p) => el('li', {}, p))));
  const hasPrev = m.versions.some((v) => v.previous);
  const table = document.getElementById('models');
  table.replaceChildren(table.querySelector('caption') || el('caption', { class: 'sr' }, 'Model versions'),
    el('thead', {}, el('tr', {}, ...['Version', 'Status', 'Created', 'AP', 'AUROC', 'F1', 'Threshold', 'Details', 'Action'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...m.versions.map((v) => el('tr', { class: v.current ? 'current' : '', 'data-version': v.version },
      el('th', { scope: 'row' }, v.version, v.modelVersion && v.modelVersion !== v.version ? el('div', { class: 'muted' }, v.modelVersion) : null),
      el('td', {}, v.current ? el('span', { class: 'badge pass' }, 'serving') : v.previous ? el('span', { class: 'badge unknown' }, 'previous') : '',
        v.problem ? el('div', { class: 'v-fail' }, v.problem) : null),
      el('td', {}, fmtTime(v.created)),
      el('td', { class: 'num' }, num(v.ap)), el('td', { class: 'num' }, num(v.auroc)), el('td', { class: 'num' }, num(v.f1)),
      el('td', { class: 'num' }, num(v.threshold), el('div', { class: 'muted' }, v.thresholdRule || '')),
      el('td', {}, details(v)),
      el('td', {}, v.current
        ? (hasPrev ? el('button', { type: 'button', disabled: !may, onclick: rollback }, 'Roll back') : '')
        : el('button', { type: 'button', class: 'primary', disabled: !may || !!v.problem, onclick: () => promote(v.version) }, `Promote ${v.version}`))))));
  const dec = document.getElementById('decisions');
  dec.replaceChildren(dec.querySelector('caption') || el('caption', { class: 'sr' }, 'Decisions'),
    el('thead', {}, el('tr', {}, ...['Time', 'Action', 'Candidate', 'Serving', 'AP candidate', 'AP serving', 'Reason'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...m.decisions.map((d) => el('tr', {},
      el('td', {}, fmtTime(d.time)), el('td', {}, d.action), el('td', {}, d.candidate || ''), el('td', {}, d.serving || ''),
      el('td', { class: 'num' }, num(d.candidateAp)), el('td', { class: 'num' }, num(d.servingAp)), el('td', {}, d.reason)))));
}

function details(v) {
  if (!v.recipe && !v.hasPRCurve) return '';
  return el('details', {}, el('summary', {}, 'Recipe and PR curve'),
    v.recipe ? el('dl', { class: 'recipe' }, ...v.recipe.flatMap((kv) => [el('dt', {}, kv.key), el('dd', {}, kv.value)])) : null,
    v.hasPRCurve ? el('img', { src: `/api/models/${v.version}/pr_curve.png`, alt: `Precision-recall curve of ${v.version}`, loading: 'lazy' }) : null);
}

async function promote(version) {
  try {
    await api('/api/models/promote', { method: 'POST', body: { version } });
    toast(`${version} promoted: diagd swaps it in within seconds.`);
  } catch (e) { toast('Not promoted: ' + e.message, true); }
  renderModels();
}

async function rollback() {
  try {
    await api('/api/models/rollback', { method: 'POST' });
    toast('Rolled back: diagd swaps the previous model in within seconds.');
  } catch (e) { toast('Not rolled back: ' + e.message, true); }
  renderModels();
}

function renderJobs() {
  const may = can('technician');
  const box = document.getElementById('jobs');
  box.replaceChildren(
    el('h2', {}, 'Jobs'),
    el('div', { id: 'job-now', class: 'job-now', 'aria-live': 'polite' }, '…'),
    el('label', { for: 'job-progress' }, 'Progress of the current step ', el('span', { id: 'job-pct', class: 'muted' })),
    el('progress', { id: 'job-progress', max: 1, value: 0 }),
    el('div', { class: 'inline' },
      el('div', {}, el('label', { for: 'job-kind' }, 'Job'),
        el('select', { id: 'job-kind', disabled: !may },
          el('option', { value: 'cycle' }, 'Cycle: generate, then retrain'),
          el('option', { value: 'augment' }, 'Generate synthetic defects'),
          el('option', { value: 'retrain' }, 'Retrain'))),
      el('div', {}, el('label', { for: 'job-n' }, 'Images to generate'), el('input', { id: 'job-n', type: 'number', min: 1, max: 100000, placeholder: 'default', disabled: !may })),
      el('div', {}, el('label', { for: 'job-gen' }, 'Generator'),
        el('select', { id: 'job-gen', disabled: !may }, el('option', { value: '' }, 'default'), el('option', { value: 'memseg' }, 'MemSeg'), el('option', { value: 'diag' }, 'DIAG (SDXL)'))),
      el('button', { type: 'button', id: 'job-start', class: 'primary', disabled: !may, onclick: startJob }, 'Start'),
      el('button', { type: 'button', id: 'job-cancel', class: 'bad', disabled: true, onclick: cancelJob }, 'Cancel the running job')));
  refreshJob();
}

async function refreshJob() {
  let j;
  try { j = await api('/api/jobs'); } catch { return; }
  const now = document.getElementById('job-now');
  if (!now) return;
  const may = can('technician');
  if (j.running) {
    now.textContent = `Running: ${j.running} since ${fmtTime(j.since)}`;
  } else if (j.last) {
    now.textContent = `Idle. Last: ${j.last}, finished ${fmtTime(j.finished)} (its outcome is in the decision log)`;
  } else {
    now.textContent = 'Idle.';
  }
  document.getElementById('job-progress').value = j.running ? j.fraction : 0;
  document.getElementById('job-pct').textContent = j.running ? `${(100 * j.fraction).toFixed(j.fraction < 0.1 ? 2 : 0)} %` : '';
  document.getElementById('job-cancel').disabled = !may || !j.running;
  document.getElementById('job-start').disabled = !may || !!j.running;
}

async function startJob() {
  const kind = document.getElementById('job-kind').value;
  const n = Number(document.getElementById('job-n').value) || 0;
  const generator = document.getElementById('job-gen').value;
  const body = kind === 'retrain' ? { kind } : { kind, n, generator };
  try {
    await api('/api/jobs/start', { method: 'POST', body });
    toast(`${kind} started`);
  } catch (e) { toast('Not started: ' + e.message, true); }
  refreshJob();
}

async function cancelJob() {
  try {
    await api('/api/jobs/cancel', { method: 'POST' });
    toast('Cancelling…');
  } catch (e) { toast('Not cancelled: ' + e.message, true); }
  refreshJob();
}
