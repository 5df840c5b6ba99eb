// A shopper's phone: the coupons storeflow sends this shopper, newest
// first, worded by coupon type.
import { follow, el, offerText, validUntil } from './live.js';

const id = decodeURIComponent(location.pathname.split('/').pop());
const tiles = document.getElementById('tiles');
const statusEl = document.getElementById('status');
const maxTiles = 50;
document.getElementById('customer').textContent = id;
document.title = `storeflow · coupons of shopper ${id}`;

function tile(m) {
  const c = m.coupon;
  const t = offerText(c);
  return el('li', { class: 'tile', 'data-coupon': c.id, 'data-type': c.type, 'data-ts': m.ts },
    el('div', { class: 'tile-dep' }, c.department),
    el('div', { class: 'headline' }, t.headline),
    el('div', { class: 'detail' }, t.detail),
    el('div', { class: 'until' }, validUntil(c)));
}

function add(m, atTop) {
  if (!m.customer || m.customer.id !== id) return;
  if (atTop) tiles.prepend(tile(m)); else tiles.append(tile(m));
  while (tiles.children.length > maxTiles) tiles.lastChild.remove();
  document.getElementById('tiles-empty').hidden = tiles.children.length > 0;
}

const states = { connecting: 'connecting…', live: 'live', resync: 'catching up…', offline: 'offline, retrying…' };

window.storeflowView = follow({
  customer: id,
  onState(s) {
    statusEl.dataset.state = s;
    statusEl.textContent = states[s] || s;
  },
  onSnapshot(snap) {
    // The shopper's coupons the store still keeps; tiles already shown
    // stay (a resync loses none).
    const shown = new Set([...tiles.children].map((t) => t.dataset.coupon + '/' + t.dataset.ts));
    const fresh = snap.coupons.filter((m) => m.customer.id === id && !shown.has(m.coupon.id + '/' + m.ts));
    for (const m of fresh.reverse()) add(m, true);
  },
  onEvent(kind, d) {
    if (kind === 'coupon') add(d, true);
  },
  onFigures() {},
});
