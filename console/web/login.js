// Says why the last sign-in failed (the server redirects with a reason).
const q = new URLSearchParams(location.search);
const msg = document.getElementById('login-msg');
if (q.has('failed')) {
  msg.textContent = 'Wrong user or password.';
  msg.hidden = false;
} else if (q.has('locked')) {
  msg.textContent = `Too many failed attempts: try again in ${q.get('locked')} s.`;
  msg.hidden = false;
}
