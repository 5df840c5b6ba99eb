package liveview

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/storeflow/storeflow/event"
)

// keepAlive is how often an idle stream gets a comment, so that a viewer
// gone away is noticed and proxies keep the connection.
const keepAlive = 15 * time.Second

// Register adds the pages and GET /api/store and GET /api/events to mux.
// Both API routes take ?customer=<id> to follow one shopper (the phone page).
func (v *View) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/store", v.serveStore)
	mux.HandleFunc("GET /api/events", v.serveEvents)
	v.registerPages(mux)
}

// figuresEvery is how often open streams get the live figures.
const figuresEvery = 2 * time.Second

// Run sends the live figures to the open streams every figuresEvery until
// ctx is done.
func (v *View) Run(ctx context.Context) error {
	tick := time.NewTicker(figuresEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		v.mu.Lock()
		idle := len(v.viewers) == 0
		v.mu.Unlock()
		if idle {
			continue
		}
		data, err := json.Marshal(v.figures())
		if err != nil {
			return fmt.Errorf("liveview: figures: %w", err)
		}
		f := frame{data: sseFrame(0, kindFigures, data)}
		v.mu.Lock()
		for w := range v.viewers {
			w.offer(f, v.m)
		}
		v.mu.Unlock()
	}
}

// Close ends every open event stream (http.Server.Shutdown waits for
// handlers; a stream would otherwise hold it until its timeout). A stream
// opened after it ends at once.
func (v *View) Close() {
	v.closeOnce.Do(func() { close(v.closed) })
}

// Snapshot is the body of GET /api/store.
type Snapshot struct {
	Seq      uint64            `json:"seq"` // the last event applied: stream events up to it are in here
	Plan     Plan              `json:"plan"`
	Shoppers []Shopper         `json:"shoppers"` // by id
	Coupons  []json.RawMessage `json:"coupons"`  // Prediction Results Messages, newest first
	Alerts   []Alert           `json:"alerts"`   // open browsing alerts, by id
	Figures  Figures           `json:"figures"`
}

// Plan is the store plan as drawn: coordinates run 0..width-1, 0..height-1,
// origin top-left, y down; rectangles have inclusive bounds.
type Plan struct {
	Name        string       `json:"name"`
	Width       int          `json:"width"`
	Height      int          `json:"height"`
	Step        int          `json:"step"`
	Entrance    Point        `json:"entrance"`
	Exit        Point        `json:"exit"`
	Departments []Department `json:"departments"`
}

// Point is a position on the plan.
type Point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

// Department is a department's name and floor rectangle.
type Department struct {
	Name string `json:"name"`
	Min  Point  `json:"min"`
	Max  Point  `json:"max"`
}

// Alert is an open browsing alert.
type Alert struct {
	ID     string `json:"id"`
	TS     int64  `json:"ts"`
	Dep    string `json:"dep"` // "" in an aisle
	X      int    `json:"x"`
	Y      int    `json:"y"`
	HasPos bool   `json:"has_pos"`
}

// Figures are the live figures.
type Figures struct {
	Shoppers         int     `json:"shoppers"`           // in the store
	FocusPerMinute   int     `json:"focus_per_minute"`   // focus events in the last minute
	CouponsPerMinute int     `json:"coupons_per_minute"` // coupons in the last minute
	ViewDropped      float64 `json:"view_events_dropped"`

	// Filled by the function given to SetFigures, when there is one.
	Rejected   int64       `json:"events_rejected"` // shopper events the pipeline refused as invalid, since start
	Dropped    int64       `json:"events_dropped"`  // events the pipeline dropped (full queues), since start
	Acceptance *Acceptance `json:"acceptance"`      // null without the simulator's ground truth
	// Experiment is the coupon experiment per arm since start (null when
	// not filled).
	Experiment []ExperimentArm `json:"experiment"`
}

// ExperimentArm is one arm of the coupon experiment: its counts, and the
// offers used per coupon with its 95 % interval.
type ExperimentArm struct {
	Arm         string  `json:"arm"`
	Focus       int64   `json:"focus"`
	Coupons     int64   `json:"coupons"`
	Redemptions int64   `json:"redemptions"`
	OffersUsed  int64   `json:"offers_used"`
	Rate        float64 `json:"rate"`
	Low         float64 `json:"low"`
	High        float64 `json:"high"`
}

// Acceptance is how the coupons issued fare with the simulated shoppers,
// since start.
type Acceptance struct {
	Received int `json:"received"`  // coupons received by simulated shoppers
	WouldUse int `json:"would_use"` // of which the shopper would use, drawn with the ground truth
	// ExpectedRate is the mean ground-truth probability of the coupons
	// received; RandomRate that of a coupon picked at random among the same
	// focus's valid coupons: the yardstick.
	ExpectedRate float64 `json:"expected_rate"`
	RandomRate   float64 `json:"random_rate"`
}

func (v *View) plan0() Plan {
	p := Plan{Name: v.plan.Name, Width: v.plan.Width, Height: v.plan.Height, Step: v.plan.Step,
		Entrance: Point{v.plan.Entrance.X, v.plan.Entrance.Y}, Exit: Point{v.plan.Exit.X, v.plan.Exit.Y},
		Departments: make([]Department, len(v.plan.Areas))}
	for i, a := range v.plan.Areas {
		p.Departments[i] = Department{Name: a.Department.String(),
			Min: Point{a.Rect.Min.X, a.Rect.Min.Y}, Max: Point{a.Rect.Max.X, a.Rect.Max.Y}}
	}
	return p
}

// Snapshot is the current state; for one customer (not ""), only what is
// about them: the shopper, their coupons and their alert.
func (v *View) Snapshot(customer string) Snapshot {
	v.mu.Lock()
	s := Snapshot{Seq: v.seq, Shoppers: []Shopper{}, Coupons: []json.RawMessage{}, Alerts: []Alert{}}
	coupons := v.coupons
	if customer != "" {
		if mine, in := v.mine[customer]; in {
			coupons = mine // more of theirs than the store's last ones hold
		}
	}
	for i := len(coupons) - 1; i >= 0; i-- {
		if customer == "" || coupons[i].who == customer {
			s.Coupons = append(s.Coupons, coupons[i].msg)
		}
	}
	for _, sh := range v.shoppers {
		if customer == "" || sh.ID == customer {
			s.Shoppers = append(s.Shoppers, *sh)
		}
	}
	for _, b := range v.alerts {
		if customer == "" || b.ID == customer {
			s.Alerts = append(s.Alerts, Alert{ID: b.ID, TS: b.TS, Dep: b.Dep.String(), X: b.X, Y: b.Y, HasPos: b.HasPos})
		}
	}
	s.Figures = v.counts()
	v.mu.Unlock()
	s.Plan = v.plan0()
	v.fillFigures(&s.Figures)
	sort.Slice(s.Shoppers, func(i, j int) bool { return s.Shoppers[i].ID < s.Shoppers[j].ID })
	sort.Slice(s.Alerts, func(i, j int) bool { return s.Alerts[i].ID < s.Alerts[j].ID })
	return s
}

// SetFigures gives the view a function that fills the figures it cannot
// count itself (the pipeline's rejections and drops, the acceptance). Call it
// before serving.
func (v *View) SetFigures(fill func(*Figures)) { v.more = fill }

func (v *View) fillFigures(f *Figures) {
	f.ViewDropped = counterValue(v.m.dropped)
	if v.more != nil {
		v.more(f)
	}
}

// figures returns the current figures (the part of the snapshot a
// figures event carries).
func (v *View) figures() Figures {
	v.mu.Lock()
	f := v.counts()
	v.mu.Unlock()
	v.fillFigures(&f)
	return f
}

// counts are the figures the view counts itself. v.mu is held.
func (v *View) counts() Figures {
	now := v.now()
	return Figures{Shoppers: len(v.shoppers), FocusPerMinute: v.focus.last(now), CouponsPerMinute: v.issued.last(now)}
}

func (v *View) serveStore(w http.ResponseWriter, r *http.Request) {
	customer, ok := customerParam(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v.Snapshot(customer))
}

// customerParam reads ?customer=<id>, the one shopper a phone follows; a bad
// id is answered 400.
func customerParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	q := r.URL.Query()
	if !q.Has("customer") {
		return "", true
	}
	id := q.Get("customer")
	if err := event.CheckID(id); err != nil {
		http.Error(w, "customer: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	return id, true
}

// viewer is one open event stream.
type viewer struct {
	only string // the one customer this viewer follows (a phone); "" for the whole store
	ch   chan frame
	lost chan struct{} // signalled when an event did not fit in ch
}

// wants reports whether the viewer follows what f is about.
func (w *viewer) wants(f frame) bool { return w.only == "" || f.who == w.only }

// offer hands f to the viewer without waiting, if it wants it; when its
// buffer is full the event is dropped, counted, and the viewer told to
// resync.
func (w *viewer) offer(f frame, m metrics) {
	if !w.wants(f) {
		return
	}
	select {
	case w.ch <- f:
	default:
		m.dropped.Inc()
		select {
		case w.lost <- struct{}{}:
		default:
		}
	}
}

func (v *View) serveEvents(w http.ResponseWriter, r *http.Request) {
	customer, ok := customerParam(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	vw := &viewer{only: customer, ch: make(chan frame, viewerBuffer), lost: make(chan struct{}, 1)}

	v.mu.Lock()
	if len(v.viewers) >= v.cfg.MaxViewers {
		v.mu.Unlock()
		v.m.refused.Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many live view streams open (VIEW_MAX_VIEWERS)", http.StatusServiceUnavailable)
		return
	}
	var replay []frame
	resync := false
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		seq, err := strconv.ParseUint(last, 10, 64)
		ok := err == nil
		if ok {
			replay, ok = v.since(seq)
		}
		resync = !ok
	}
	v.viewers[vw] = struct{}{}
	v.mu.Unlock()
	v.m.viewers.Inc()
	defer func() {
		v.mu.Lock()
		delete(v.viewers, vw)
		if len(v.viewers) == 0 {
			v.keepUntil = v.now().Add(replayGrace)
		}
		v.mu.Unlock()
		v.m.viewers.Dec()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if resync {
		v.m.resyncs.Inc()
		if _, err := w.Write(resyncFrame); err != nil {
			return
		}
	}
	for _, f := range replay {
		if !vw.wants(f) {
			continue
		}
		if _, err := w.Write(f.data); err != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var out []byte
		select {
		case <-r.Context().Done():
			return
		case <-v.closed:
			return
		case <-vw.lost:
			for n := len(vw.ch); n > 0; n-- {
				<-vw.ch
				v.m.dropped.Inc()
			}
			v.m.resyncs.Inc()
			out = resyncFrame
		case f := <-vw.ch:
			out = f.data
		case <-tick.C:
			out = []byte(": keep-alive\n\n")
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		// Write what is queued too before flushing, so a busy store is
		// not one flush per event.
		for more := true; more; {
			select {
			case f := <-vw.ch:
				if _, err := w.Write(f.data); err != nil {
					return
				}
			default:
				more = false
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// resyncFrame tells a viewer it missed events: fetch GET /api/store again.
// It has no id, so the viewer's Last-Event-ID stays that of the last event
// it got.
var resyncFrame = []byte("event: " + kindResync + "\ndata: {}\n\n")
