// The console's shell: who is signed in, the page router, and the API helper every
// page uses (JSON in and out, the CSRF token on every POST).
import * as live from './live.js';
import * as fails from './fails.js';
import * as review from './review.js';
import * as cat from './catalogue.js';
import * as models from './models.js';

export const session = { user: '', role: 'viewer', csrf: '', signIn: false, station: '' };
const rank = { viewer: 1, operator: 2, technician: 3 };

// can says whether the signed-in role may do what needs role (the server checks too).
export function can(role) { return (rank[session.role] || 0) >= rank[role]; }

export class APIError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// api fetches a console endpoint; body is JSON, or a FormData for uploads.
export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = session.csrf;
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers['Content-Type'] = 'application/json'; }
  const r = await fetch(path, opts);
  if (r.status === 401 && session.signIn) { location.href = '/login'; throw new APIError(401, {}); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new APIError(r.status, data);
  return data;
}

let toastTimer;
export function toast(msg, error = false) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = 'toast show' + (error ? ' error' : '');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, error ? 6000 : 2500);
}

// el builds an element: el('div', {class: 'x', onclick: f}, child, 'text', ...).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// fmtTime shows today's times as 17:28:55 and older ones with their date.
export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  const time = d.toLocaleTimeString(undefined, { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtScore(x) { return (typeof x === 'number') ? x.toFixed(3) : '–'; }

const pages = { live, fails, review, catalogue: cat, models };
let current = null;

function route() {
  const name = (location.hash || '#live').slice(1);
  const page = pages[name] ? name : 'live';
  if (current && current !== page && pages[current].hide) pages[current].hide();
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== 'page-' + page;
  for (const a of document.querySelectorAll('.top nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  current = page;
  document.title = `${document.querySelector('#page-' + page + ' h1').textContent} · diagd ${session.station}`;
  pages[page].show();
}

async function start() {
  try {
    Object.assign(session, await api('/api/session'));
  } catch (e) {
    toast('Cannot reach diagd: ' + e.message, true);
    return;
  }
  document.getElementById('station').textContent = session.station;
  document.getElementById('who').textContent = `${session.user} (${session.role})`;
  const out = document.getElementById('logout');
  out.hidden = !session.signIn;
  out.addEventListener('click', async () => { await api('/logout', { method: 'POST' }).catch(() => {}); location.href = '/login'; });
  window.addEventListener('hashchange', route);
  route();
}

start();
