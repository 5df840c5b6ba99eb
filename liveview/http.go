package liveview

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// keepAlive is how often an idle stream gets a comment, so that a viewer
// gone away is noticed and proxies keep the connection.
const keepAlive = 15 * time.Second

// Register adds GET /api/store and GET /api/events to mux.
func (v *View) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/store", v.serveStore)
	mux.HandleFunc("GET /api/events", v.serveEvents)
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

// Snapshot is the current state.
func (v *View) Snapshot() Snapshot {
	v.mu.Lock()
	s := Snapshot{Seq: v.seq, Shoppers: make([]Shopper, 0, len(v.shoppers)),
		Coupons: make([]json.RawMessage, len(v.coupons)), Alerts: make([]Alert, 0, len(v.alerts))}
	for _, sh := range v.shoppers {
		s.Shoppers = append(s.Shoppers, *sh)
	}
	for i, c := range v.coupons {
		s.Coupons[len(v.coupons)-1-i] = c
	}
	for _, b := range v.alerts {
		s.Alerts = append(s.Alerts, Alert{ID: b.ID, TS: b.TS, Dep: b.Dep.String(), X: b.X, Y: b.Y, HasPos: b.HasPos})
	}
	now := v.now()
	s.Figures = Figures{Shoppers: len(v.shoppers), FocusPerMinute: v.focus.last(now), CouponsPerMinute: v.issued.last(now)}
	v.mu.Unlock()
	s.Plan = v.plan0()
	s.Figures.ViewDropped = counterValue(v.m.dropped)
	sort.Slice(s.Shoppers, func(i, j int) bool { return s.Shoppers[i].ID < s.Shoppers[j].ID })
	sort.Slice(s.Alerts, func(i, j int) bool { return s.Alerts[i].ID < s.Alerts[j].ID })
	return s
}

func (v *View) serveStore(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v.Snapshot())
}

// viewer is one open event stream.
type viewer struct {
	ch   chan frame
	lost chan struct{} // signalled when an event did not fit in ch
}

// offer hands f to the viewer without waiting; when its buffer is full the
// event is dropped, counted, and the viewer told to resync.
func (w *viewer) offer(f frame, m metrics) {
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
	rc := http.NewResponseController(w)
	vw := &viewer{ch: make(chan frame, viewerBuffer), lost: make(chan struct{}, 1)}

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
