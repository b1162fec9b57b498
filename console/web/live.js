// Live: each camera's state and latest frame with its verdict, and a strip of the last
// verdicts, from the server-sent event stream (open only while this page shows).
import { el, fmtScore, fmtTime, session } from './app.js';

const STRIP = 120;
let es = null;
const cams = new Map(); // name -> {card, bar, img, svg, fps, badge, reason}
const counts = { pass: 0, fail: 0, unknown: 0 };
let lastStatus = null;

export function show() {
  if (es) return;
  es = new EventSource('/api/events');
  es.addEventListener('status', (e) => renderStatus(JSON.parse(e.data)));
  es.addEventListener('verdicts', (e) => onVerdicts(JSON.parse(e.data)));
  es.addEventListener('frame', (e) => onFrame(JSON.parse(e.data)));
  es.onerror = () => renderSummary();
}

export function hide() {
  if (es) { es.close(); es = null; }
}

function renderSummary() {
  const s = lastStatus;
  const box = document.getElementById('live-summary');
  const stat = (n, l, cls) => el('div', { class: 'stat' }, el('div', { class: 'n ' + (cls || '') }, n), el('div', { class: 'l' }, l));
  const reconnecting = es && es.readyState === EventSource.CONNECTING;
  let ready = stat('…', 'connecting');
  if (reconnecting) ready = stat('Offline', 'the page lost diagd; reconnecting…', 'v-unknown');
  else if (s) ready = s.ready ? stat('Ready', 'station ' + session.station, 'v-pass') : stat('Not ready', (s.notReady || []).join('; '), 'v-fail');
  box.replaceChildren(
    ready,
    stat(counts.pass, 'passed since opened', 'v-pass'),
    stat(counts.fail, 'failed since opened', 'v-fail'),
    stat(s && s.model ? s.model : 'none', 'model serving'),
  );
}

function camCard(name) {
  let c = cams.get(name);
  if (c) return c;
  const badge = el('span', { class: 'badge' });
  const fps = el('span', { class: 'fps' });
  const img = el('img', { alt: `Latest frame of ${name}`, hidden: true });
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('aria-hidden', 'true');
  const empty = el('div', { class: 'empty' }, 'Waiting for a frame…');
  const bar = el('div', { class: 'verdict-bar none' }, el('span', { class: 'word' }, '—'), el('span', { class: 'score' }, ''), el('span', { class: 'meta' }, 'no verdict yet'));
  const reason = el('div', { class: 'reason', hidden: true });
  const card = el('article', { class: 'camera', 'aria-label': `Camera ${name}`, 'data-camera': name },
    el('header', {}, el('h2', {}, name), el('div', {}, badge, ' ', fps)),
    el('div', { class: 'frame' }, img, svg, empty),
    bar, reason);
  document.getElementById('cameras').append(card);
  c = { card, badge, fps, img, svg, empty, bar, reason };
  cams.set(name, c);
  return c;
}

function renderStatus(s) {
  lastStatus = s;
  for (const cam of s.cameras || []) {
    const c = camCard(cam.name);
    c.badge.textContent = cam.state;
    c.badge.className = 'badge ' + cam.state;
    c.fps.textContent = `${cam.fps.toFixed(1)} fps`;
    const why = cam.reason || cam.lastError || '';
    c.reason.textContent = cam.state === 'online' ? '' : why;
    c.reason.hidden = cam.state === 'online' || !why;
  }
  renderSummary();
}

function setBar(c, v) {
  const cls = ['pass', 'fail'].includes(v.verdict) ? v.verdict : 'unknown';
  c.bar.className = 'verdict-bar ' + cls;
  c.bar.replaceChildren(
    el('span', { class: 'word' }, v.verdict.toUpperCase()),
    el('span', { class: 'score' }, el('small', {}, 'score '), fmtScore(v.score)),
    el('span', { class: 'meta' }, [v.partId ? `part ${v.partId}` : '', fmtTime(v.time), `fails at ≥ ${fmtScore(v.threshold)}`, v.error || ''].filter((x) => x).join(' · ')),
  );
  c.bar.dataset.verdict = v.verdict;
}

function onVerdicts(batch) {
  const strip = document.getElementById('strip');
  for (const v of batch.verdicts) {
    counts[v.verdict in counts ? v.verdict : 'unknown']++;
    setBar(camCard(v.camera), v);
    const cls = ['pass', 'fail'].includes(v.verdict) ? v.verdict : 'unknown';
    strip.append(el('li', { class: cls, title: `${v.camera} ${v.verdict} ${fmtScore(v.score)} ${fmtTime(v.time)}`, 'aria-label': `${v.camera} ${v.verdict}` }));
  }
  while (strip.children.length > STRIP) strip.firstElementChild.remove();
  renderSummary();
}

function onFrame(f) {
  const c = camCard(f.camera);
  c.img.src = `/api/frames/${encodeURIComponent(f.camera)}?id=${f.id}`;
  c.img.hidden = false;
  c.empty.hidden = true;
  c.img.dataset.verdict = f.verdict.verdict;
  c.svg.setAttribute('viewBox', `0 0 ${f.width} ${f.height}`);
  c.svg.replaceChildren(...(f.outline || []).map((poly) => {
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'polygon');
    p.setAttribute('points', poly.map((q) => `${q.x},${q.y}`).join(' '));
    return p;
  }));
}
