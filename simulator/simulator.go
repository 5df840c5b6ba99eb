// Package simulator owns the simulated shoppers: a bounded pool of customers who
// come into the store, walk its plan from department to department — lingering
// in some, passing through others — and leave, published as the enter, move and
// exit events real sensors would send. It replaces the original customer
// simulator (seed 002) with a seeded discrete-event simulation, so that a run
// can be replayed event for event.
package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/store"
)

// Publisher is what the simulator needs from the broker. Publish must not keep
// payload after it returns.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Config is the simulator's part of the configuration.
type Config struct {
	Enabled        bool    `env:"SIMULATOR_ENABLED" envDefault:"true"`
	Speed          float64 `env:"SIMULATOR_SPEED" envDefault:"1"` // 1 = real time, 20 = twenty times faster; event ts is simulated time
	Seed           int64   `env:"SIMULATOR_SEED" envDefault:"0"`  // 0 = pick a random seed (logged, so a run can be replayed)
	AverageInStore int     `env:"CUSTOMERS_AVERAGE_IN_STORE" envDefault:"6"`
	CustomersFile  string  `env:"CUSTOMERS_LIST_FILE" envDefault:"customers.csv"`
	EnterTopic     string  `env:"ENTER_TOPIC" envDefault:"customer/enter"`
	MoveTopic      string  `env:"MOVE_TOPIC" envDefault:"customer/move"`
	ExitTopic      string  `env:"EXIT_TOPIC" envDefault:"customer/exit"`

	// Set by the wiring, not from the environment:
	Dwell time.Duration `env:"-"` // the focus dwell; lingering shoppers stay well over it, passers-by well under
	Gap   time.Duration `env:"-"` // the focus reset gap; moves of one shopper are always closer than this
	Start time.Time     `env:"-"` // simulated time at start; zero = now
}

// Limits of the configuration.
const (
	MaxSpeed          = 1e6
	MaxAverageInStore = 10000
	MinDwell          = 2 * time.Second
	MaxDwell          = time.Hour
	// stepTime is the simulated time between two moves of a shopper.
	stepTime = time.Second
)

// Validate checks the settings read from the environment; errors name the
// variable and its value. A disabled simulator is not checked. Dwell, Gap and
// Start are set by the wiring and checked by New.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	return c.check()
}

func (c Config) check() error {
	var errs []error
	switch {
	case math.IsNaN(c.Speed) || c.Speed <= 0:
		errs = append(errs, fmt.Errorf("SIMULATOR_SPEED=%s: must be > 0", formatFloat(c.Speed)))
	case c.Speed > MaxSpeed:
		errs = append(errs, fmt.Errorf("SIMULATOR_SPEED=%s: must be <= 1e6", formatFloat(c.Speed)))
	}
	if c.AverageInStore < 1 || c.AverageInStore > MaxAverageInStore {
		errs = append(errs, fmt.Errorf("CUSTOMERS_AVERAGE_IN_STORE=%d: must be between 1 and %d", c.AverageInStore, MaxAverageInStore))
	}
	if strings.TrimSpace(c.CustomersFile) == "" {
		errs = append(errs, fmt.Errorf("CUSTOMERS_LIST_FILE=%s: must name the customer list", c.CustomersFile))
	}
	topics := [...]struct{ name, value string }{
		{"ENTER_TOPIC", c.EnterTopic}, {"MOVE_TOPIC", c.MoveTopic}, {"EXIT_TOPIC", c.ExitTopic},
	}
	for i, t := range topics {
		switch {
		case t.value == "":
			errs = append(errs, fmt.Errorf("%s=: must not be empty", t.name))
		case strings.ContainsAny(t.value, "+#"):
			errs = append(errs, fmt.Errorf("%s=%s: must not contain the MQTT wildcards + or #", t.name, t.value))
		case strings.ContainsRune(t.value, 0) || !utf8.ValidString(t.value) || len(t.value) > 65535:
			errs = append(errs, fmt.Errorf("%s=%q: is not a valid MQTT topic name", t.name, t.value))
		default:
			for _, u := range topics[:i] {
				if u.value == t.value {
					errs = append(errs, fmt.Errorf("%s=%s: must differ from %s", t.name, t.value, u.name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// minPause is the smallest wait worth a timer: an event due sooner goes out at
// once, so a fast run is not slowed by timer granularity.
const minPause = time.Millisecond

// meanVisitSamples is how many visits New walks in advance to learn how long a
// visit lasts on this plan, for Little's law.
const meanVisitSamples = 256

// openingWindow is how long the shoppers waiting at opening time take to come in.
const openingWindow = 5 * time.Second

// maxArrivalGap caps the time to the next arrival, so that no arithmetic on
// simulated time can overflow.
const maxArrivalGap = 24 * time.Hour

// Simulator walks simulated shoppers through the store. Everything it does
// happens in the goroutine that calls Run.
type Simulator struct {
	cfg  Config
	plan *store.Plan
	pub  Publisher
	log  *slog.Logger
	m    metrics

	seed int64
	rng  *rand.Rand
	lat  *lattice
	walk *walker

	customers []string
	free      []int32 // customers not in the store
	shoppers  []shopper
	freeSlots []int32
	inStore   int
	maxIn     int

	q         queue
	rate      float64       // arrivals per simulated second
	meanVisit time.Duration // simulated, from enter to exit
	startSec  int64         // Start, split so that ts needs no time.Time arithmetic
	startNsec int64

	buf     []byte // payload under construction, reused
	running atomic.Bool

	warn *ratelog.Logger // publish failures and turned-away arrivals, at most one line per logEvery each

	// traceVisit, when set (by tests), sees every itinerary as the visit begins.
	traceVisit func(id string, stops []stop)
}

type metrics struct {
	enter, move, exit prometheus.Counter
	publishErrors     prometheus.Counter
	turnedAway        prometheus.Counter
	visits            prometheus.Counter
	inStore           prometheus.Gauge
}

// New builds a simulator for the plan. customers are the ids of the shoppers
// who may come in (at least one). reg nil means a private registry.
func New(cfg Config, plan *store.Plan, customers []string, pub Publisher, log *slog.Logger, reg prometheus.Registerer) (*Simulator, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	switch {
	case cfg.Dwell < MinDwell:
		return nil, fmt.Errorf("simulator: focus dwell %v is too short: shoppers must linger over it and pass through under it in whole-second steps (want >= %v)", cfg.Dwell, MinDwell)
	case cfg.Dwell > MaxDwell:
		return nil, fmt.Errorf("simulator: focus dwell %v is too long (want <= %v)", cfg.Dwell, MaxDwell)
	case cfg.Gap <= stepTime:
		return nil, fmt.Errorf("simulator: focus reset gap %v must be longer than the %v between a shopper's moves", cfg.Gap, stepTime)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	if y := cfg.Start.UTC().Year(); cfg.Start.Unix() < 1 || y > 9000 {
		return nil, fmt.Errorf("simulator: start %v is not between 1970 and 9000", cfg.Start)
	}
	if pub == nil {
		return nil, errors.New("simulator: no publisher")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ids, err := checkCustomers(customers)
	if err != nil {
		return nil, err
	}
	lat, err := newLattice(plan)
	if err != nil {
		return nil, err
	}

	s := &Simulator{
		cfg:       cfg,
		plan:      plan,
		pub:       pub,
		log:       log.With("component", "simulator"),
		seed:      cfg.Seed,
		lat:       lat,
		walk:      newWalker(lat, cfg.Dwell),
		customers: ids,
		free:      make([]int32, len(ids)),
		maxIn:     4*cfg.AverageInStore + 10,
		startSec:  cfg.Start.Unix(),
		startNsec: int64(cfg.Start.Nanosecond()),
		buf:       make([]byte, 0, 128),
	}
	s.warn = ratelog.New(s.log, logEvery)
	for s.seed == 0 {
		s.seed = rand.Int64()
	}
	for i := range s.free {
		s.free[i] = int32(i)
	}
	s.rng = rand.New(rand.NewPCG(uint64(s.seed), 0x73746f7265666c6f)) // "storeflo"
	if err := s.register(reg); err != nil {
		return nil, err
	}

	// Little's law: to keep AverageInStore shoppers in the store, let them arrive
	// at AverageInStore per mean visit. The mean is learnt by walking visits on
	// this plan with a generator of its own, so the run itself is untouched.
	probe := rand.New(rand.NewPCG(uint64(s.seed), 0x70726f6265)) // "probe"
	var sh shopper
	var steps int
	for range meanVisitSamples {
		s.walk.begin(&sh, probe)
		for !sh.done {
			s.walk.step(&sh, probe)
			steps++
		}
	}
	s.meanVisit = max(stepTime, time.Duration(steps)*stepTime/meanVisitSamples)
	s.rate = float64(cfg.AverageInStore) / s.meanVisit.Seconds()

	// Opening: the store fills at once, so the demo shows shoppers from the start.
	for range cfg.AverageInStore {
		s.q.push(time.Duration(s.rng.Int64N(int64(openingWindow))), arrivalOpening)
	}
	s.q.push(s.arrivalGap(), arrivalNext)
	return s, nil
}

func (s *Simulator) register(reg prometheus.Registerer) error {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "storeflow", Subsystem: "simulator", Name: "events_published_total",
		Help: "Simulated events published, by kind (enter, move, exit).",
	}, []string{"kind"})
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "storeflow", Subsystem: "simulator", Name: name, Help: help})
	}
	s.m = metrics{
		enter:         events.WithLabelValues("enter"),
		move:          events.WithLabelValues("move"),
		exit:          events.WithLabelValues("exit"),
		publishErrors: counter("publish_errors_total", "Simulated events the broker refused; the simulation goes on without them."),
		turnedAway:    counter("arrivals_turned_away_total", "Arrivals turned away because the store was at its cap or every customer was already inside."),
		visits:        counter("visits_total", "Simulated shoppers who came into the store."),
		inStore: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "storeflow", Subsystem: "simulator", Name: "shoppers_in_store",
			Help: "Simulated shoppers in the store now.",
		}),
	}
	for _, c := range []prometheus.Collector{events, s.m.publishErrors, s.m.turnedAway, s.m.visits, s.m.inStore} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("simulator: register metrics: %w", err)
		}
	}
	return nil
}

// checkCustomers copies the customer ids, refusing any the event decoders
// would refuse and any given twice.
func checkCustomers(customers []string) ([]string, error) {
	if len(customers) == 0 {
		return nil, errors.New("simulator: no customers to simulate")
	}
	if len(customers) > math.MaxInt32 {
		return nil, fmt.Errorf("simulator: %d customers are too many", len(customers))
	}
	seen := make(map[string]int, len(customers))
	for i, id := range customers {
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("simulator: customer #%d: %w", i+1, err)
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("simulator: customer #%d: id %q is also customer #%d", i+1, id, j+1)
		}
		seen[id] = i
	}
	return append([]string(nil), customers...), nil
}

// checkID accepts the ids the event decoders accept.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("empty customer id")
	case len(id) > 64:
		return fmt.Errorf("customer id %.20q… is longer than 64 bytes", id)
	case !utf8.ValidString(id):
		return fmt.Errorf("customer id %q is not valid UTF-8", id)
	}
	return nil
}

// Seed returns the seed actually used: Config.Seed, or the random one picked
// when that was 0.
func (s *Simulator) Seed() int64 { return s.seed }

// Run simulates until ctx is done, then returns nil. It may be called once.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("simulator: Run called twice")
	}
	if !s.cfg.Enabled {
		s.log.Info("simulator disabled")
		<-ctx.Done()
		return nil
	}
	s.log.Info("simulator started",
		"seed", s.seed,
		"speed", s.cfg.Speed,
		"average_in_store", s.cfg.AverageInStore,
		"customers", len(s.customers),
		"plan", s.plan.Name,
		"mean_visit", s.meanVisit,
		"start", s.cfg.Start,
	)
	// One timer for the whole run; since Go 1.23 Reset needs no draining.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	wallStart := time.Now()
	var now time.Duration
	for ctx.Err() == nil {
		a := s.q.pop()
		now = a.at
		if !s.pace(ctx, timer, wallStart, a.at) {
			break
		}
		switch a.who {
		case arrivalNext:
			s.q.push(a.at+s.arrivalGap(), arrivalNext)
			s.arrive(ctx, a.at)
		case arrivalOpening:
			s.arrive(ctx, a.at)
		default:
			s.move(ctx, a.who, a.at)
		}
	}
	s.log.Info("simulator stopped", "seed", s.seed, "simulated", now.Truncate(time.Second), "in_store", s.inStore)
	return nil
}

// pace waits until the wall clock catches up with simulated time at, and
// reports false if ctx ended first. Behind schedule, it does not wait.
func (s *Simulator) pace(ctx context.Context, timer *time.Timer, wallStart time.Time, at time.Duration) bool {
	due := float64(at) / s.cfg.Speed
	wait := time.Duration(math.MaxInt64 / 2)
	if due < float64(wait) {
		wait = time.Duration(due)
	}
	wait -= time.Since(wallStart)
	if wait < minPause {
		return true
	}
	timer.Reset(wait)
	select {
	case <-ctx.Done():
		timer.Stop()
		return false
	case <-timer.C:
		return true
	}
}

// arrivalGap draws the time to the next arrival of the Poisson stream.
func (s *Simulator) arrivalGap() time.Duration {
	gap := s.rng.ExpFloat64() / s.rate * float64(time.Second)
	if gap >= float64(maxArrivalGap) {
		return maxArrivalGap
	}
	return time.Duration(gap)
}

// arrive lets a customer in at simulated time at, if the store has room and a
// customer who is not already inside.
func (s *Simulator) arrive(ctx context.Context, at time.Duration) {
	switch {
	case s.inStore >= s.maxIn:
		s.turnAway("store_full")
		return
	case len(s.free) == 0:
		s.turnAway("every_customer_inside")
		return
	}
	i := s.rng.IntN(len(s.free))
	cust := s.free[i]
	last := len(s.free) - 1
	s.free[i] = s.free[last]
	s.free = s.free[:last]

	var slot int32
	if n := len(s.freeSlots); n > 0 {
		slot = s.freeSlots[n-1]
		s.freeSlots = s.freeSlots[:n-1]
	} else {
		s.shoppers = append(s.shoppers, shopper{})
		slot = int32(len(s.shoppers) - 1)
	}
	sh := &s.shoppers[slot]
	sh.id = s.customers[cust]
	sh.cust = cust
	s.walk.begin(sh, s.rng)
	if s.traceVisit != nil {
		s.traceVisit(sh.id, sh.stops[:sh.nStops])
	}

	s.inStore++
	s.m.inStore.Set(float64(s.inStore))
	s.m.visits.Inc()
	s.publishPresence(ctx, s.cfg.EnterTopic, s.m.enter, sh.id, at)
	s.publishMove(ctx, sh, at)
	if sh.done {
		s.leave(ctx, slot, at)
		return
	}
	s.q.push(at+stepTime, slot)
}

// move makes a shopper's next step, and lets it out if that was the exit.
func (s *Simulator) move(ctx context.Context, slot int32, at time.Duration) {
	sh := &s.shoppers[slot]
	last := s.walk.step(sh, s.rng)
	s.publishMove(ctx, sh, at)
	if last {
		s.leave(ctx, slot, at)
		return
	}
	s.q.push(at+stepTime, slot)
}

func (s *Simulator) leave(ctx context.Context, slot int32, at time.Duration) {
	sh := &s.shoppers[slot]
	s.publishPresence(ctx, s.cfg.ExitTopic, s.m.exit, sh.id, at)
	s.free = append(s.free, sh.cust)
	s.freeSlots = append(s.freeSlots, slot)
	sh.id = ""
	s.inStore--
	s.m.inStore.Set(float64(s.inStore))
}

func (s *Simulator) turnAway(reason string) {
	s.m.turnedAway.Inc()
	s.warn.Log(slog.LevelWarn, "away", "simulator arrival turned away", "reason", reason, "in_store", s.inStore)
}

// ts is the event timestamp of simulated time at: unix seconds.
func (s *Simulator) ts(at time.Duration) int64 {
	return s.startSec + (s.startNsec+int64(at))/int64(time.Second)
}

func (s *Simulator) publishPresence(ctx context.Context, topic string, kind prometheus.Counter, id string, at time.Duration) {
	s.buf = event.AppendPresence(s.buf[:0], event.Presence{ID: id, TS: s.ts(at)})
	s.publish(ctx, topic, kind)
}

func (s *Simulator) publishMove(ctx context.Context, sh *shopper, at time.Duration) {
	x, y := s.lat.xy(sh.pos)
	s.buf = event.AppendMove(s.buf[:0], event.Move{ID: sh.id, TS: s.ts(at), X: x, Y: y})
	s.publish(ctx, s.cfg.MoveTopic, s.m.move)
}

// publish sends s.buf. A failure is counted and logged (rate-limited); the
// shopper walks on regardless, as a real one would past a broken sensor.
func (s *Simulator) publish(ctx context.Context, topic string, kind prometheus.Counter) {
	if ctx.Err() != nil {
		return
	}
	if err := s.pub.Publish(ctx, topic, s.buf); err != nil {
		if ctx.Err() != nil {
			return // shutting down: not a failure
		}
		s.m.publishErrors.Inc()
		s.warn.Log(slog.LevelWarn, "publish", "simulator publish failed", "topic", topic, "error", err)
		return
	}
	kind.Inc()
}

// logEvery is how often one kind of trouble is logged, at most.
const logEvery = 10 * time.Second
