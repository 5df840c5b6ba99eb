// The live feed shared by the pages: one EventSource on /api/events and the
// snapshot GET /api/store, kept in order.
//
// The stream is opened first; on open (and on every resync) the snapshot is
// fetched while stream events are buffered; then only events numbered after
// the snapshot's seq are applied. EventSource reconnects by itself and sends
// Last-Event-ID; when the server refuses the stream (503: too many viewers)
// EventSource gives up, so the page tries again itself.

const kinds = ['enter', 'move', 'exit', 'focus', 'browsing', 'coupon', 'helped'];
const maxBuffered = 10000; // events held while a snapshot is on its way
const retryAfter = 5000;   // ms before opening a refused or broken stream again

// follow (the whole store, or one customer's events when customer is given)
// calls onSnapshot(snapshot) and onEvent(kind, data) in order,
// onFigures(figures) as they come, and onState(state) with connecting, live,
// resync or offline. It returns the counters the page shows in
// window.storeflowView.
export function follow({ customer, onSnapshot, onEvent, onFigures, onState }) {
  const only = customer ? '?customer=' + encodeURIComponent(customer) : '';
  const stats = { events: 0, resyncs: 0, seq: 0, snapshots: 0 };
  let buffer = null; // events waiting for a snapshot, or null when live
  let es = null;
  let generation = 0; // a snapshot answer of an older sync is ignored

  function setState(s) {
    onState(s);
  }

  async function sync() {
    const mine = ++generation;
    buffer = [];
    for (let wait = 500; ; wait = Math.min(wait * 2, retryAfter)) {
      try {
        const r = await fetch('/api/store' + only, { cache: 'no-store' });
        if (!r.ok) throw new Error('GET /api/store: ' + r.status);
        const snap = await r.json();
        if (mine !== generation) return;
        stats.snapshots++;
        stats.seq = snap.seq;
        onSnapshot(snap);
        const held = buffer;
        buffer = null;
        for (const [kind, id, data] of held) apply(kind, id, data);
        setState('live');
        return;
      } catch (err) {
        if (mine !== generation) return;
        console.warn('storeflow: snapshot failed, retrying', err);
        await new Promise((ok) => setTimeout(ok, wait));
        if (mine !== generation) return;
      }
    }
  }

  function apply(kind, id, data) {
    if (id <= stats.seq) return; // already in the snapshot
    stats.seq = id;
    stats.events++;
    onEvent(kind, data);
  }

  function resync() {
    stats.resyncs++;
    setState('resync');
    sync();
  }

  function open() {
    setState('connecting');
    es = new EventSource('/api/events' + only);
    es.onopen = () => sync();
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (503) or not a stream: EventSource will not try again.
        setState('offline');
        generation++;
        es = null;
        setTimeout(open, retryAfter);
      } else {
        setState('connecting'); // EventSource reconnects with Last-Event-ID
      }
    };
    for (const kind of kinds) {
      es.addEventListener(kind, (e) => {
        const id = Number(e.lastEventId);
        const data = JSON.parse(e.data);
        if (buffer === null) {
          apply(kind, id, data);
        } else if (buffer.length < maxBuffered) {
          buffer.push([kind, id, data]);
        } else {
          resync(); // the snapshot is slow to come: start again from a newer one
        }
      });
    }
    es.addEventListener('resync', resync);
    es.addEventListener('figures', (e) => onFigures(JSON.parse(e.data)));
  }

  open();
  return stats;
}

// el makes an element: el('li', {class: 'x', 'data-id': '7'}, child, 'text', …).
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== undefined && c !== null && c !== false) e.append(c);
  }
  return e;
}

export const money = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD' });

export function percent(x) {
  return (Math.round(x * 10) / 10).toLocaleString() + ' %';
}

// offerText words a coupon as a shopper reads it: a headline and a line of
// detail, by coupon type.
export function offerText(c) {
  const products = c.products || [];
  const first = products[0];
  const off = percent(c.discount) + ' off';
  switch (c.type) {
    case 'buy_all': {
      const total = products.reduce((s, p) => s + (p.buy_price || 0), 0);
      return {
        headline: `${off} when you buy all ${products.length}`,
        detail: products.map((p) => p.name).join(' + ') + (products.length ? ` · together ${money.format(total)}` : ''),
      };
    }
    case 'buy_more':
      return {
        headline: `Buy ${c.how_many}, get ${off}`,
        detail: first ? `${c.how_many} × ${first.name} (${money.format(first.buy_price)} each)` : '',
      };
    case 'just_discount':
      return {
        headline: `${off} ${first ? first.name : ''}`.trim(),
        detail: first ? `was ${money.format(first.buy_price)}, now ${money.format(first.buy_price * (1 - c.discount / 100))}` : '',
      };
    case 'department':
      return {
        headline: `${off} the whole ${c.department} department`,
        detail: products.length ? `for example ${products.slice(0, 3).map((p) => p.name).join(', ')}` : '',
      };
    default:
      return { headline: off, detail: first ? first.name : '' };
  }
}

export function validUntil(c) {
  return c.end_date ? `valid until ${c.end_date}` : '';
}
