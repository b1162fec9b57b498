// The mask painter: a dialog with the frame and a canvas over it at the frame's own
// resolution. Paint with the mouse (or a pen), or with the arrow keys and Space.
// Resolves with a PNG Blob (white = defect, black = not), 'skip', or null (cancelled).
import { el, toast } from './app.js';

const $ = (id) => document.getElementById(id);

export function paintMask({ src, frames = null, title = 'Paint the defect', skip = '' }) {
  const dlg = $('painter'), img = $('paint-bg'), cv = $('paint-mask'), cursor = $('paint-cursor');
  const ctx = cv.getContext('2d');
  const sel = $('paint-frame'), selLabel = $('paint-frame-label');
  $('painter-title').textContent = title;
  $('paint-skip').hidden = !skip;
  $('paint-skip').textContent = skip || '';
  sel.hidden = selLabel.hidden = !frames;
  if (frames) {
    sel.replaceChildren(...frames.map((f) => el('option', { value: f.url }, f.label)));
    sel.onchange = () => load(sel.value);
    src = frames[0].url;
  }
  let painted = false, drawing = false, last = null;
  const kb = { x: 0, y: 0 };

  function load(url) {
    img.onload = () => {
      cv.width = img.naturalWidth;
      cv.height = img.naturalHeight;
      // Shown as large as the screen allows (small frames scaled up), painted at full size.
      const s = Math.min((window.innerWidth * 0.9 - 40) / cv.width, (window.innerHeight * 0.65) / cv.height);
      img.style.width = `${Math.round(cv.width * s)}px`;
      img.style.height = `${Math.round(cv.height * s)}px`;
      ctx.clearRect(0, 0, cv.width, cv.height);
      painted = false;
      kb.x = cv.width / 2; kb.y = cv.height / 2;
    };
    img.src = url;
  }
  const scale = () => cv.width / cv.getBoundingClientRect().width;
  const at = (e) => { const r = cv.getBoundingClientRect(); return { x: (e.clientX - r.left) * scale(), y: (e.clientY - r.top) * scale() }; };
  function stroke(a, b) {
    const erase = document.querySelector('input[name=pmode]:checked').value === 'erase';
    ctx.globalCompositeOperation = erase ? 'destination-out' : 'source-over';
    ctx.strokeStyle = ctx.fillStyle = '#ff1a1a';
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.lineWidth = Number($('brush').value) * scale();
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
    if (!erase) painted = true;
  }
  function showCursor() {
    const s = scale(), d = Number($('brush').value);
    cursor.hidden = false;
    cursor.style.left = `${kb.x / s}px`;
    cursor.style.top = `${kb.y / s}px`;
    cursor.style.width = cursor.style.height = `${d}px`;
  }
  cv.onpointerdown = (e) => { if (e.button !== 0) return; drawing = true; cv.setPointerCapture(e.pointerId); last = at(e); stroke(last, last); };
  cv.onpointermove = (e) => { if (!drawing) return; const p = at(e); stroke(last, p); last = p; };
  cv.onpointerup = cv.onpointercancel = () => { drawing = false; };
  cv.onkeydown = (e) => {
    const step = (e.shiftKey ? 32 : 8) * scale();
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[e.key]) {
      kb.x = Math.min(cv.width, Math.max(0, kb.x + moves[e.key][0]));
      kb.y = Math.min(cv.height, Math.max(0, kb.y + moves[e.key][1]));
      if (e.ctrlKey) stroke(kb, kb);
    } else if (e.key === ' ' || e.key === 'Enter') {
      stroke(kb, kb);
    } else return;
    e.preventDefault();
    showCursor();
  };
  cv.onblur = () => { cursor.hidden = true; };
  cv.onfocus = showCursor;
  $('paint-clear').onclick = () => { ctx.clearRect(0, 0, cv.width, cv.height); painted = false; };
  load(src);

  return new Promise((resolve) => {
    const finish = (v) => { dlg.onclose = null; dlg.close(); resolve(v); };
    $('paint-cancel').onclick = () => finish(null);
    $('paint-skip').onclick = () => finish('skip');
    dlg.oncancel = (e) => { e.preventDefault(); finish(null); };
    $('paint-done').onclick = () => {
      if (!painted) { toast('Paint over the defect first.', true); return; }
      exportMask(cv).then((blob) => finish({ blob, frame: frames ? sel.value : src }));
    };
    dlg.showModal();
  });
}

// exportMask turns the painted layer into a black-and-white PNG of the frame's size.
function exportMask(cv) {
  const w = cv.width, h = cv.height;
  const from = cv.getContext('2d').getImageData(0, 0, w, h).data;
  const out = document.createElement('canvas');
  out.width = w; out.height = h;
  const octx = out.getContext('2d');
  const img = octx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const v = from[i * 4 + 3] > 0 ? 255 : 0;
    img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v;
    img.data[i * 4 + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
}
