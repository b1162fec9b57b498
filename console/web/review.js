// Review: pending synthetic batches, each image at full size beside its mask and the
// good frame it was painted on; accept or reject per image or per batch.
import { api, can, el, toast } from './app.js';

const STEP = 24; // images shown per batch at first, and per "show more"
const shown = new Map(); // batch -> how many images are shown

export async function show() {
  const box = document.getElementById('batches');
  let batches;
  try {
    batches = await api('/api/review');
  } catch (e) {
    box.replaceChildren(el('div', { class: 'empty-state' }, 'Cannot load the pending batches: ' + e.message));
    return;
  }
  if (!batches.length) {
    box.replaceChildren(el('div', { class: 'empty-state' }, 'Nothing to review. With DIAGD_AUTO_ACCEPT=false, new batches wait here.'));
    return;
  }
  box.replaceChildren(...batches.map(batch));
}

function batch(b) {
  const may = can('operator');
  const url = (im, which) => `/api/review/${encodeURIComponent(b.id)}/${im.id}/${which}`;
  const h = `batch-${b.id}`;
  const n = shown.get(b.id) || STEP;
  const more = Math.min(b.images.length, n + STEP) - n;
  return el('section', { class: 'batch', 'aria-labelledby': h, 'data-batch': b.id },
    el('header', {},
      el('h2', { id: h }, `Batch ${b.id}`, el('span', { class: 'muted' }, ` · ${b.total} image${b.total === 1 ? '' : 's'} to review`)),
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'good', disabled: !may, onclick: () => decide(b.id, [], true) }, 'Accept all'),
        el('button', { type: 'button', class: 'bad', disabled: !may, onclick: () => decide(b.id, [], false) }, 'Reject all'))),
    ...b.images.slice(0, n).map((im) => el('div', { class: 'rimage', 'data-image': im.id },
      el('div', { class: 'row' },
        el('div', {}, el('strong', {}, `#${im.id}`, im.kind ? ` · ${im.kind}` : ''),
          im.prompt ? el('span', { class: 'muted' }, ` “${im.prompt}”`) : null),
        el('div', { class: 'actions' },
          el('button', { type: 'button', class: 'good', disabled: !may, onclick: () => decide(b.id, [im.id], true) }, `Accept #${im.id}`),
          el('button', { type: 'button', class: 'bad', disabled: !may, onclick: () => decide(b.id, [im.id], false) }, `Reject #${im.id}`))),
      el('div', { class: 'triple', tabindex: 0, role: 'group', 'aria-label': `Image ${im.id}, its mask and its source (scrolls sideways)` },
        el('figure', {}, el('img', { src: url(im, 'image'), alt: `Synthetic image ${im.id}` }), el('figcaption', {}, 'generated')),
        im.hasMask ? el('figure', {}, el('img', { src: url(im, 'mask'), alt: `Mask of image ${im.id}` }), el('figcaption', {}, 'mask')) : null,
        im.hasSource ? el('figure', {}, el('img', { src: url(im, 'source'), alt: `Good frame image ${im.id} was painted on` }), el('figcaption', {}, 'painted on: ' + im.sourceName)) : null))),
    more > 0 ? el('button', { type: 'button', class: 'more', onclick: () => { shown.set(b.id, n + STEP); show(); } }, `Show ${more} more`) : null,
    b.total > b.images.length ? el('p', { class: 'muted' }, `The page lists the first ${b.images.length}; “Accept all” and “Reject all” act on all ${b.total}.`) : null);
}

async function decide(batchId, images, accept) {
  try {
    const d = await api(`/api/review/${encodeURIComponent(batchId)}/decide`, { method: 'POST', body: { images, accept } });
    const n = (d.accepted || []).length + (d.rejected || []).length;
    if (d.failed && d.failed.length) toast(`Not moved: ${d.failed.join('; ')}`, true);
    else toast(`${accept ? 'Accepted' : 'Rejected'} ${n} image${n === 1 ? '' : 's'}`);
  } catch (e) {
    toast('Not done: ' + e.message, true);
  }
  show();
}
