// The store page: the plan, the shoppers as dots, the coupons issued, the
// shoppers who need help and the live figures.
import { follow, el, offerText, percent, validUntil } from './live.js';

const svgNS = 'http://www.w3.org/2000/svg';
const maxCards = 20; // as many as the snapshot keeps

const plan = document.getElementById('plan');
const statusEl = document.getElementById('status');
const couponsEl = document.getElementById('coupons');
const alertsEl = document.getElementById('alerts');

let drawn = null;        // the plan drawn: {key, half, r, deps: Map(name → rect), layer}
const shoppers = new Map(); // id → {x, y, hasPos, dep, focus}
const alerts = new Map();   // id → alert
const nodes = new Map();    // id → the shopper's <a> on the plan
const dirty = new Set();    // shoppers to redraw at the next frame
let frameAsked = false;

function svg(tag, attrs) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// drawPlan draws the departments, aisles, entrance and exit. A grid plan
// (step 1) is in cells: a cell x spans [x, x+1); the original plan is in
// pixels.
function drawPlan(p) {
  const key = JSON.stringify(p);
  if (drawn && drawn.key === key) return;
  plan.replaceChildren();
  const cell = p.step === 1 ? 1 : 0;
  const unit = p.step; // one sensor step
  plan.setAttribute('viewBox', `0 0 ${p.width} ${p.height}`);
  plan.style.setProperty('--plan-aspect', `${p.width} / ${p.height}`);
  plan.append(svg('rect', { class: 'floor', x: 0, y: 0, width: p.width, height: p.height }));
  const deps = new Map();
  for (const d of p.departments) {
    const r = svg('rect', {
      class: 'dep', 'data-dep': d.name, x: d.min.x, y: d.min.y,
      width: d.max.x - d.min.x + cell, height: d.max.y - d.min.y + cell,
      rx: unit * 0.15,
    });
    const label = svg('text', {
      class: 'dep-name', x: (d.min.x + d.max.x + cell) / 2, y: d.min.y + unit * 0.6,
      'font-size': unit * 0.45, 'text-anchor': 'middle',
    });
    label.textContent = d.name;
    plan.append(r, label);
    deps.set(d.name, r);
  }
  for (const [id, pt, name] of [['entrance', p.entrance, 'in'], ['exit', p.exit, 'out']]) {
    const g = svg('g', { id });
    const title = svg('title', {});
    title.textContent = id;
    g.append(title);
    g.append(svg('rect', {
      class: 'door', x: pt.x + cell / 2 - unit * 0.45, y: pt.y + cell / 2 - unit * 0.45,
      width: unit * 0.9, height: unit * 0.9, rx: unit * 0.1,
    }));
    const t = svg('text', {
      class: 'door-name', x: pt.x + cell / 2, y: pt.y + cell / 2,
      'font-size': unit * 0.36, 'text-anchor': 'middle', 'dominant-baseline': 'central',
    });
    t.textContent = name;
    g.append(t);
    plan.append(g);
  }
  const layer = svg('g', { id: 'shoppers' });
  plan.append(layer);
  drawn = { key, half: cell / 2, unit, r: unit * 0.2, entrance: p.entrance, deps, layer };
  nodes.clear();
  for (const id of shoppers.keys()) dirty.add(id);
}

function redrawLater(id) {
  dirty.add(id);
  if (!frameAsked) {
    frameAsked = true;
    requestAnimationFrame(render);
  }
}

// render draws the shoppers changed since the last frame, and the
// departments' glow.
function render() {
  frameAsked = false;
  if (!drawn) return;
  for (const id of dirty) {
    const s = shoppers.get(id);
    let node = nodes.get(id);
    if (!s) {
      if (node) node.remove();
      nodes.delete(id);
      continue;
    }
    if (!node) {
      node = svg('a', { href: '/phone/' + encodeURIComponent(id), 'data-id': id });
      const title = svg('title', {});
      title.textContent = 'shopper ' + id;
      node.append(svg('circle', { class: 'shopper', 'data-id': id, r: drawn.r }), title);
      drawn.layer.append(node);
      nodes.set(id, node);
    }
    const pos = s.hasPos ? s : drawn.entrance;
    const c = node.firstChild;
    const [dx, dy] = spread(id);
    c.setAttribute('cx', pos.x + drawn.half + dx);
    c.setAttribute('cy', pos.y + drawn.half + dy);
    c.classList.toggle('focus', s.focus);
    c.classList.toggle('alerted', alerts.has(id));
  }
  dirty.clear();
  const glowing = new Set();
  for (const s of shoppers.values()) if (s.focus && s.dep) glowing.add(s.dep);
  for (const [name, r] of drawn.deps) r.classList.toggle('glow', glowing.has(name));
}

// spread is a small offset of its own for each shopper, so that shoppers at
// one sensor position do not hide each other.
function spread(id) {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) | 0;
  const u = drawn.unit * 0.09;
  return [((h & 7) - 3.5) * u, (((h >> 3) & 7) - 3.5) * u];
}

function shopper(id) {
  let s = shoppers.get(id);
  if (!s) {
    s = { x: 0, y: 0, hasPos: false, dep: '', focus: false };
    shoppers.set(id, s);
  }
  return s;
}

function depAt(x, y) {
  if (!drawn) return '';
  for (const [name, r] of drawn.deps) {
    const rx = +r.getAttribute('x'), ry = +r.getAttribute('y');
    const w = +r.getAttribute('width') - drawn.half * 2, h = +r.getAttribute('height') - drawn.half * 2;
    if (x >= rx && x <= rx + w && y >= ry && y <= ry + h) return name;
  }
  return '';
}

function couponCard(m) {
  const c = m.coupon, id = m.customer.id;
  const t = offerText(c);
  const first = (c.products || []).slice(0, 2).map((p) => p.name).join(' · ');
  return el('li', { class: 'coupon-card', 'data-customer': id, 'data-coupon': c.id, 'data-type': c.type },
    el('div', { class: 'card-top' },
      el('a', { href: '/phone/' + encodeURIComponent(id) }, 'shopper ' + id),
      el('span', { class: 'dep-tag' }, c.department),
      el('span', { class: 'type-tag' }, c.type.replace('_', ' ') + ' · ' + percent(c.discount))),
    el('div', { class: 'headline' }, t.headline),
    el('div', { class: 'detail' }, first));
}

function addCoupon(m, atTop) {
  const card = couponCard(m);
  if (atTop) couponsEl.prepend(card); else couponsEl.append(card);
  while (couponsEl.children.length > maxCards) couponsEl.lastChild.remove();
  document.getElementById('coupons-empty').hidden = couponsEl.children.length > 0;
}

function alertItem(a) {
  const where = a.dep ? `in ${a.dep}` : 'in an aisle';
  const button = el('button', { class: 'helped', type: 'button' }, 'mark as helped');
  button.addEventListener('click', async () => {
    button.disabled = true;
    const r = await fetch(`/api/alerts/${encodeURIComponent(a.id)}/helped`, { method: 'POST' }).catch(() => null);
    if (r && (r.ok || r.status === 404)) removeAlert(a.id);
    else button.disabled = false;
  });
  return el('li', { class: 'alert', 'data-id': a.id },
    el('span', {}, el('a', { href: '/phone/' + encodeURIComponent(a.id) }, 'shopper ' + a.id), ` browsing ${where}`),
    button);
}

function addAlert(a) {
  alerts.set(a.id, a);
  const old = alertsEl.querySelector(`li[data-id="${CSS.escape(a.id)}"]`);
  const item = alertItem(a);
  if (old) old.replaceWith(item); else alertsEl.prepend(item);
  alertsShown();
  redrawLater(a.id);
}

function removeAlert(id) {
  if (!alerts.delete(id)) return;
  const old = alertsEl.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (old) old.remove();
  alertsShown();
  redrawLater(id);
}

function alertsShown() {
  document.getElementById('alerts-empty').hidden = alerts.size > 0;
  document.getElementById('alert-count').textContent = alerts.size ? `(${alerts.size})` : '';
}

function showFigures(f) {
  const set = (name, text) => { document.querySelector(`[data-figure="${name}"]`).textContent = text; };
  set('shoppers', f.shoppers.toLocaleString());
  set('focus_per_minute', f.focus_per_minute.toLocaleString());
  set('coupons_per_minute', f.coupons_per_minute.toLocaleString());
  const a = f.acceptance;
  const use = document.querySelector('[data-figure="acceptance"]');
  if (a && a.received > 0) {
    const times = a.random_rate > 0 ? ` · ${(a.expected_rate / a.random_rate).toFixed(2)}×` : '';
    set('acceptance', `${percent(100 * a.expected_rate)} vs ${percent(100 * a.random_rate)} random${times}`);
    use.title = `Of ${a.received.toLocaleString()} coupons received, the simulated shoppers would use ${a.would_use.toLocaleString()} ` +
      `(${percent((100 * a.would_use) / a.received)}, drawn). Expected use of the coupons issued against a coupon picked at ` +
      'random among the same focus\'s valid coupons, from the ground truth.';
  } else {
    set('acceptance', a ? '–' : 'n/a (no simulator)');
  }
  set('dropped', (f.events_dropped + f.view_events_dropped).toLocaleString());
  set('rejected', f.events_rejected.toLocaleString());
  showExperiment(f.experiment);
}

const armNames = { holdout: 'holdout', a: 'model', b: 'challenger' };

// showExperiment fills the experiment's table: the arms with shoppers in
// them; hidden while no arm has any.
function showExperiment(arms) {
  const shown = (arms || []).filter((a) => a.focus > 0 || a.coupons > 0 || a.redemptions > 0);
  document.getElementById('experiment').hidden = shown.length === 0;
  document.getElementById('experiment-arms').replaceChildren(...shown.map((a) => {
    const tr = document.createElement('tr');
    for (const text of [armNames[a.arm] || a.arm, a.focus.toLocaleString(), a.coupons.toLocaleString(),
      a.redemptions.toLocaleString()]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    // The rate, and its 95 % interval on a line of its own.
    const round = (x) => (Math.round(1000 * x) / 10).toLocaleString();
    tr.append(a.coupons > 0
      ? el('td', {}, percent(100 * a.rate), el('span', { class: 'interval' }, `${round(a.low)}–${round(a.high)} %`))
      : el('td', {}, '–'));
    return tr;
  }));
}

const states = { connecting: 'connecting…', live: 'live', resync: 'catching up…', offline: 'offline, retrying…' };

window.storeflowView = follow({
  onState(s) {
    statusEl.dataset.state = s;
    statusEl.textContent = states[s] || s;
  },
  onSnapshot(snap) {
    drawPlan(snap.plan);
    for (const id of shoppers.keys()) redrawLater(id);
    shoppers.clear();
    for (const s of snap.shoppers) {
      shoppers.set(s.id, { x: s.x, y: s.y, hasPos: s.has_pos, dep: s.dep, focus: s.focus });
      redrawLater(s.id);
    }
    couponsEl.replaceChildren();
    for (const m of snap.coupons) addCoupon(m, false);
    document.getElementById('coupons-empty').hidden = couponsEl.children.length > 0;
    alerts.clear();
    alertsEl.replaceChildren();
    for (const a of snap.alerts) addAlert(a);
    alertsShown();
    showFigures(snap.figures);
  },
  onEvent(kind, d) {
    switch (kind) {
      case 'enter':
        shopper(d.id);
        break;
      case 'move': {
        const s = shopper(d.id);
        const dep = depAt(d.x, d.y);
        if (dep !== s.dep) s.focus = false;
        Object.assign(s, { x: d.x, y: d.y, hasPos: true, dep });
        break;
      }
      case 'exit':
        shoppers.delete(d.id);
        removeAlert(d.id);
        break;
      case 'focus': {
        const s = shopper(d.id);
        s.focus = true;
        s.dep = d.dep;
        if (d.x !== undefined) Object.assign(s, { x: d.x, y: d.y, hasPos: true });
        break;
      }
      case 'browsing':
        addAlert(d);
        break;
      case 'helped':
        removeAlert(d.id);
        break;
      case 'coupon':
        addCoupon(d, true);
        break;
    }
    redrawLater(d.id || (d.customer && d.customer.id));
  },
  onFigures: showFigures,
});
