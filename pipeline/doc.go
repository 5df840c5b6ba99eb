// Package pipeline owns the flow from shopper events to coupons: the dwell
// and browsing detectors (move → focus, move → browsing) and the focus stages
// (context → score → select → publish).
//
//	enter ─┬─► dwell worker (hash of id) ── state reset
//	       └─► prefetch workers ────────── central.Customer (warms the cache)
//	move ────► dwell worker (hash of id) ── focus? ──► FOCUS topic
//	                                     └─ browsing? ──► BROWSING topic
//	exit ────► dwell worker (hash of id) ── forget shopper and visit
//	FOCUS topic ─► context stage ─► score stage ─► select+publish stage ─► PREDICTION topic
//
// Policies, written down once:
//
//   - Hot path in-process. With the embedded broker, events arrive through
//     mochi's inline client; decoding happens in the delivery callback, so a
//     queue holds small decoded values, never raw payloads.
//   - Callbacks never wait on I/O. A callback decodes, validates and hands the
//     event to a bounded queue. When the queue is full, PIPELINE_OVERFLOW decides:
//     "block" (default) makes the publisher wait — the simulator slows down, a
//     TCP client's reads pause — and "drop" discards the event. Every drop is
//     counted (storeflow_events_dropped_total) and logged, rate-limited.
//   - Per-shopper order. Enter, move and exit events go to one dwell worker
//     chosen by a hash of the shopper id, so one shopper's events are handled
//     in order without locks. The focus stages after it run in parallel.
//   - Shared state. With DWELL_STATE=redis the shopper lives in Redis, and
//     each event is one script applied atomically to the shopper's key, so
//     several instances (MQTT_SHARE_GROUP) are one detector: late moves are
//     dropped and counted whichever instance applied the later one. A dwell
//     worker sends what is queued, up to dwellBatch events, as one pipeline;
//     a batch Redis fails is dropped and counted ("dwell_state").
//   - Event time. Dwell and browsing are measured on the events' ts, never
//     the server clock, so replays and a sped-up simulator behave like real
//     time. Both rules run on the same shopper state in the same worker: no
//     second queue, no second lookup.
//   - Focus from anywhere. The detector publishes focus events to the broker and
//     the focus stages consume that topic, so focus events from outside the
//     process take exactly the same path.
//   - Once per focus. A focus event delivered again (QoS 1 is at least once)
//     is recognised by shopper, department and ts among the last
//     FOCUS_DEDUP_WINDOW taken in, counted as outcome "duplicate" and not
//     handled twice: the visit ledger would offer the next best coupon.
//     With DWELL_STATE=redis the focus stages also claim that identity in
//     Redis before asking anyone (claims.go), confirm it once the focus
//     settled, and wait while another instance holds it unconfirmed: a
//     claim of a dead instance expires after FOCUS_CLAIM_TTL and the focus
//     is handled here. Redis failing fails closed (outcome "redis_error"):
//     at most one coupon per focus. The visit ledger is then a Redis set
//     per shopper, shared by the instances.
//   - Gates before work. A shopper in the experiment's holdout, or capped
//     (COUPONS_PER_SHOPPER_PER_DAY, COUPON_DEPARTMENT_COOLDOWN, event time),
//     is stopped before the context stage: no central call, no scoring
//     (outcomes "holdout", "capped"). The caps are reserved atomically at the
//     offer and given back when the coupon is not published, so only
//     published coupons count (caps.go); in Redis with DWELL_STATE=redis.
//   - Per-event failures are values. A bad payload, an unknown customer, no
//     valid coupon, a scorer error: counted by reason, logged (rate-limited),
//     and the pipeline goes on. Only a cancelled context stops a stage.
//   - Bounded everything. Queues have fixed capacity, tracked shoppers are
//     capped (MAX_SHOPPERS: a full table evicts, shoppers seen in one move
//     first, so a flood of fake ids cannot lock real shoppers out) and
//     forgotten after SHOPPER_TTL without events.
//   - Shutdown is one context. When it ends, intake closes in the order of the
//     flow: the dwell queues first (callbacks refuse events, counted as dropped
//     "shutdown"), and once the dwell workers have emptied them and published
//     their focus events, the focus queue. The focus stages finish what is
//     queued and in flight, coupons published, within SHUTDOWN_TIMEOUT; then
//     what is left is cancelled and counted as dropped "shutdown", and Run
//     returns. The app closes the broker only after Run returned.
package pipeline
