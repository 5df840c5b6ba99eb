// Package app owns the wiring: it builds every part from a config.Config,
// owns every long-lived goroutine, and serves the HTTP endpoints. main and the
// end-to-end tests both run exactly this.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/liveview"
	"github.com/storeflow/storeflow/loop"
	"github.com/storeflow/storeflow/pipeline"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/live"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/recommender/score"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/recommender/v2"
	"github.com/storeflow/storeflow/simulator"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/cache"
	"github.com/storeflow/storeflow/store/central"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// Broker is the process's own broker connection: with the embedded broker,
// its inline client (no TCP hop).
type Broker interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	Subscribe(filter string, h broker.Handler) error
}

// conn is the broker surface the app needs: the embedded broker and the
// external client both provide it.
type conn interface {
	Broker
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	Addr() string
	Close() error // only for a connection that never ran
}

// App is one storeflow process.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	plan    *store.Plan
	world   *world.World
	catalog *store.Catalog
	model   *live.Model        // the in-process model in use; nil with PREDICTION_URL and no MODEL_FILE
	scorer  recommender.Scorer // what the pipeline asks
	scorerB recommender.Scorer // what it asks for arm b's shoppers (MODEL_B_FILE); nil: no challenger
	client  *protocol.Client   // nil without PREDICTION_URL
	server  *protocol.Server   // /score and the Open Inference Protocol
	accept  *simulator.Acceptance
	cache   *cache.Cache          // what the focus path reads: in front of the central
	redis   redis.UniversalClient // the one Redis client, shared by its users; nil without REDIS_URL
	central *central.Server       // the central API this process serves from its catalog
	conn    conn

	centralClient *central.Client // nil without CENTRAL_URL
	modelFiles    []*live.File    // MODEL_FILE's and MODEL_B_FILE's, reloaded when replaced and on SIGHUP
	retrainer     *live.Retrainer // nil unless RETRAIN_EVERY
	pipeline      *pipeline.Pipeline
	loop          *loop.Loop             // offers, redemptions, history, the experiment's figures
	sim           *simulator.Simulator   // nil when SIMULATOR_ENABLED=false
	view          *liveview.View         // nil when VIEW_ENABLED=false or HTTP_ADDR=off
	http          net.Listener           // nil when HTTP_ADDR=off
	testRefused   *prometheus.CounterVec // test endpoint requests refused, by reason; nil when they are off
	ready         chan struct{}
}

// New builds every part and binds every listener, so a busy port or an
// unreachable broker is an error here, before anything runs.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if a.plan, err = store.NewPlan(cfg.Store.Plan, cfg.Store.Width, cfg.Store.Height); err != nil {
		return nil, err
	}
	if err := a.loadWorld(); err != nil {
		return nil, err
	}
	if err := a.loadScorer(); err != nil {
		return nil, err
	}
	a.central = central.NewServer(a.catalog, log.With("component", "central_server"), a.reg)
	if err := a.buildSource(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.closeSource()
		}
	}()
	var model recommender.RowScorer // a nil *Model in it would be a model
	if a.model != nil {
		model = a.model
	}
	a.server = protocol.NewServer(model, log.With("component", "prediction_server"), protocol.NewServerMetrics(a.reg))
	defer func() {
		if err != nil && a.client != nil {
			a.client.Close()
		}
	}()

	blog := log.With("component", "broker")
	if cfg.MockMQTT() {
		m := broker.NewMock(blog)
		a.conn = m
		a.registerMockMetrics(m)
	} else if cfg.Broker.Embedded() {
		a.conn, err = broker.NewEmbedded(cfg.Broker, blog, broker.EmbeddedOptions{
			Registerer: a.reg,
			OwnTopics:  []string{cfg.Pipeline.FocusTopic, cfg.Pipeline.PredictionTopic, cfg.Pipeline.BrowsingTopic},
		})
	} else {
		a.conn, err = broker.Connect(ctx, cfg.Broker, blog, a.reg)
	}
	if err != nil {
		return nil, err
	}
	defer func() { // a failure from here on must not leave the broker bound
		if err != nil {
			_ = a.conn.Close()
		}
	}()

	a.pipeline, err = pipeline.New(cfg.Pipeline, pipeline.Parts{Plan: a.plan, Source: a.cache, Redis: a.redis, RedisPrefix: cfg.Store.CachePrefix, Scorer: a.scorer,
		ScorerB: a.scorerB, Experiment: cfg.Experiment, Threshold: cfg.Recommender.Threshold, Sub: a.conn, Pub: a.conn,
		Log: log.With("component", "pipeline"), Registerer: a.reg})
	if err != nil {
		return nil, err
	}

	if err := a.buildLoop(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = a.loop.Close()
		}
	}()

	if cfg.View.Enabled && cfg.HTTPAddr != config.HTTPOff {
		pc := cfg.Pipeline
		a.view, err = liveview.New(cfg.View, a.plan, liveview.Topics{Enter: pc.EntryTopic, Move: pc.MoveTopic, Exit: pc.ExitTopic,
			Focus: pc.FocusTopic, Browsing: pc.BrowsingTopic, Prediction: pc.PredictionTopic}, log.With("component", "liveview"), a.reg)
		if err == nil {
			a.view.SetFigures(a.viewFigures)
			err = a.view.Subscribe(a.conn)
		}
		if err != nil {
			return nil, err
		}
	}

	if cfg.SimulatorOverridden {
		log.Info("TESTING_NO_MQTT=true: simulator off, events come from the test endpoints")
	}
	if cfg.Simulator.Enabled {
		ids, err := a.shopperIDs()
		if err != nil {
			return nil, err
		}
		scfg := cfg.Simulator
		scfg.Dwell, scfg.Gap = cfg.Pipeline.FocusDwell, cfg.Pipeline.FocusGap
		a.sim, err = simulator.New(scfg, a.plan, ids, a.conn, log, a.reg)
		if err != nil {
			return nil, err
		}
		if a.world.Truth != nil {
			a.accept = simulator.NewAcceptance(a.catalog, a.world.Truth, a.sim.Seed(), acceptanceLogEvery,
				log.With("component", "simulator"), a.reg)
			a.accept.RedeemOn(a.conn, cfg.Loop.RedeemTopic)
		}
	}

	if cfg.HTTPAddr != config.HTTPOff {
		l, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, httpListenError(cfg, err)
		}
		a.http = a.limitConnections(l)
	}
	return a, nil
}

// buildLoop builds the offers ledger and the history, following the
// topics on the app's broker connection: in Redis with several instances
// (DWELL_STATE=redis), in memory otherwise.
func (a *App) buildLoop() (err error) {
	cfg := a.cfg
	p := loop.Parts{Experiment: cfg.Experiment, FocusTopic: cfg.Pipeline.FocusTopic, PredictionTopic: cfg.Pipeline.PredictionTopic,
		HistoryPath: cfg.Loop.HistoryFile, Log: a.log.With("component", "loop"), Registerer: a.reg}
	if cfg.Pipeline.DwellState == pipeline.DwellStateRedis {
		p.Redis, p.RedisPrefix = a.redis, cfg.Store.CachePrefix
	}
	if !cfg.MockMQTT() { // the mock delivers nothing: POST /redeem is then handled in process
		p.Pub = a.conn
	}
	if a.loop, err = loop.New(cfg.Loop, p); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if p.HistoryPath == "" {
		a.log.Info("no history file: set HISTORY_FILE to keep the offers and redemptions", "redeem_topic", cfg.Loop.RedeemTopic)
	} else {
		a.log.Info("offers and redemptions appended to the history", "file", p.HistoryPath, "redeem_topic", cfg.Loop.RedeemTopic,
			"redeem_window", cfg.Loop.Window, "shared_in_redis", p.Redis != nil)
	}
	if err := a.loop.Subscribe(a.conn); err != nil {
		_ = a.loop.Close()
		return fmt.Errorf("app: %w", err)
	}
	return nil
}

// httpListenError names HTTP_ADDR, set or not, and for a port already in use
// says how to move it.
func httpListenError(cfg config.Config, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("app: listen on HTTP_ADDR=%s: %w", cfg.HTTPAddr, err)
	}
	which := "HTTP_ADDR"
	if !cfg.IsSet("HTTP_ADDR") {
		which = "HTTP_ADDR, by default"
	}
	host, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	free := "8001"
	if port == free {
		free = "8002"
	}
	other := net.JoinHostPort(host, free)
	return fmt.Errorf("app: listen on %s (%s): %w: another program holds the port (another storeflow?): "+
		"set HTTP_ADDR to a free address (HTTP_ADDR=%s), or HTTP_ADDR=%s for no HTTP endpoints", cfg.HTTPAddr, which, err, other, config.HTTPOff)
}

// acceptanceLogEvery is how often the simulated shoppers' coupon use is logged.
const acceptanceLogEvery = 30 * time.Second

// loadWorld loads the catalog from DATA_DIR or generates the demo's, with its
// ground truth and history, around today, and places its coupon dates
// (COUPON_DATES).
func (a *App) loadWorld() (err error) {
	start := time.Now()
	if dir := a.cfg.Store.DataDir; dir != "" {
		t, err := csvdir.Load(dir)
		if err == nil {
			a.world, err = world.New(t.Catalog, t.Preferences, t.History)
		}
		if err != nil {
			return fmt.Errorf("app: DATA_DIR: %w", err)
		}
	} else if a.world, err = world.Generate(world.Config{Seed: a.cfg.Store.CatalogSeed, Reference: start}); err != nil {
		return fmt.Errorf("app: generate catalog: %w", err)
	}
	validToday := a.placeCoupons(store.DayOf(start.Unix()))
	a.catalog = a.world.Catalog
	nCust, nCoup, nProd, nLinks := a.catalog.Sizes()
	source := "generated"
	if a.cfg.Store.DataDir != "" {
		source = a.cfg.Store.DataDir
	}
	a.log.Info("catalog ready", "source", source, "customers", nCust, "coupons", nCoup, "products", nProd,
		"coupon_products", nLinks, "coupons_valid_today", validToday, "history_offers", len(a.world.History),
		"ground_truth", a.world.Truth != nil, "seed", a.cfg.Store.CatalogSeed, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// placeCoupons moves the world's coupon dates as COUPON_DATES says, saying
// so, and returns how many coupons are valid today. A catalog with none is
// not an error (a shop may have nothing running), but every focus would then
// find no coupon: the warning names the period the coupons cover and the
// setting that moves it.
func (a *App) placeCoupons(today store.Day) int {
	mode := a.cfg.Store.CouponDates
	first, last, ok := a.world.Catalog.CouponPeriod()
	if !ok {
		a.log.Warn("the catalog has no coupons: no focus will get one")
		return 0
	}
	if days := store.CouponDateShift(mode, first, last, today); days != 0 {
		a.world.Catalog = a.world.Catalog.ShiftCouponDates(days)
		a.log.Info("coupon dates shifted to cover today", "setting", "COUPON_DATES="+mode,
			"data_from", first.String(), "data_to", last.String(),
			"from", (first + days).String(), "to", (last + days).String(), "days", int(days))
		first, last = first+days, last+days
	}
	valid := 0
	for _, cp := range a.world.Catalog.Coupons() {
		if cp.ValidOn(today) {
			valid++
		}
	}
	if valid == 0 {
		a.log.Warn("no coupon is valid today: every focus will find none", "today", today.String(),
			"coupons_from", first.String(), "coupons_to", last.String(), "setting", "COUPON_DATES="+mode,
			"hint", "COUPON_DATES=shift moves the coupons' dates to cover today")
	}
	return valid
}

// loadScorer picks what the pipeline asks for predictions: the remote service
// (PREDICTION_URL), random scores (SCORER=random), or the in-process model —
// loaded from MODEL_FILE or trained now on the world's history. The model is
// also what /score and the Open Inference Protocol serve. Arm b's shoppers
// are scored by the challenger (MODEL_B_FILE) when there is one.
func (a *App) loadScorer() (err error) {
	rc := a.cfg.Recommender
	models := live.NewMetrics(a.reg)
	mlog := a.log.With("component", "model")
	switch {
	case rc.ModelFile != "":
		f, err := live.LoadFile("MODEL_FILE", rc.ModelFile, string(experiment.A), models, mlog)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.modelFiles = append(a.modelFiles, f)
		a.model = f.Model()
	case rc.URL == "" && rc.Scorer == recommender.ScorerModel:
		start := time.Now()
		w := a.world
		if len(w.History) == 0 {
			// Data without a history (the original demo's four tables):
			// train on the generated shop's, as the original's model was
			// trained on artificial data.
			if w, err = world.Generate(world.Config{Seed: a.cfg.Store.CatalogSeed, Reference: start}); err != nil {
				return fmt.Errorf("app: generate a history to train on: %w", err)
			}
		}
		m, rep, err := train.World(w, train.Options{}, false)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.model = live.NewModel(string(experiment.A), m, "trained", nil, models)
		took := time.Since(start).Round(time.Millisecond)
		if w != a.world {
			a.log.Info("model trained on the generated shop's history: DATA_DIR has no coupon_history.csv",
				"data_dir", a.cfg.Store.DataDir, "seed", a.cfg.Store.CatalogSeed, "offers", rep.Offers, "trees", rep.Trees, "took", took)
		} else {
			a.log.Info("model trained", "offers", rep.Offers, "trees", rep.Trees, "took", took)
		}
	}
	switch {
	case rc.Scorer == recommender.ScorerRandom:
		a.scorer = recommender.Random{}
		a.log.Warn("SCORER=random: coupons are scored at random, for comparison with the model")
	case rc.URL != "":
		codec := score.Codec
		if rc.Protocol == recommender.ProtocolV2 {
			codec = v2.Codec
		}
		if a.client, err = protocol.NewClient(rc, codec, protocol.NewClientMetrics(a.reg)); err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.scorer = a.client
		a.log.Info("predictions from a remote service", "url", redact.URL(rc.URL), "protocol", rc.Protocol, "model", rc.Model)
	default:
		a.scorer = a.model
	}
	switch b := a.cfg.Experiment.ModelBFile; b {
	case "":
	case experiment.RandomPick:
		a.scorerB = recommender.Random{}
	default:
		f, err := live.LoadFile("MODEL_B_FILE", b, string(experiment.B), models, mlog)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.modelFiles = append(a.modelFiles, f)
		a.scorerB = f.Model()
	}
	if every := a.cfg.Models.RetrainEvery; every > 0 {
		a.retrainer = &live.Retrainer{History: live.History(a.cfg.Loop.HistoryFile, a.cfg.Store.DataDir), Catalog: a.catalog, Model: a.model,
			Log: mlog.With("component", "retrain")}
		mlog.Info("retraining on", "every", every, "history", a.retrainer.History)
	}
	return nil
}

// ReloadModels reads MODEL_FILE and MODEL_B_FILE again now, as on SIGHUP:
// each is put in use if it holds a model, or refused with a log line.
func (a *App) ReloadModels() {
	if len(a.modelFiles) == 0 {
		a.log.Info("reload asked, but no model file is in use (MODEL_FILE, MODEL_B_FILE)")
		return
	}
	for _, f := range a.modelFiles {
		f.Check(true)
	}
}

// Scorer is what the pipeline asks for predictions.
func (a *App) Scorer() recommender.Scorer { return a.scorer }

// World is the catalog with its ground truth and history, when known.
func (a *App) World() *world.World { return a.world }

// Acceptance counts the coupons simulated shoppers receive and would use
// (nil without the simulator or without ground truth).
func (a *App) Acceptance() *simulator.Acceptance { return a.accept }

// shopperIDs returns who the simulator may send in: the customers of
// CUSTOMERS_LIST_FILE when it exists (it must, if set explicitly), else every
// catalog customer.
func (a *App) shopperIDs() ([]string, error) {
	path := a.cfg.Simulator.CustomersFile
	if _, err := os.Stat(path); err == nil || a.cfg.CustomersFileSet {
		ids, err := simulator.LoadCustomerList(path)
		if err != nil {
			return nil, fmt.Errorf("app: CUSTOMERS_LIST_FILE: %w", err)
		}
		unknown := 0
		for _, id := range ids {
			if _, err := a.catalog.Customer(context.Background(), id); err != nil {
				unknown++
			}
		}
		a.log.Info("simulated shoppers from file", "file", path, "customers", len(ids), "not_in_catalog", unknown)
		return ids, nil
	}
	cs := a.catalog.Customers()
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}

// BrokerAddr is the embedded broker's TCP address ("" with an external broker).
func (a *App) BrokerAddr() string { return a.conn.Addr() }

// ViewURL is the store page's address, or "" without the live view.
func (a *App) ViewURL() string {
	if a.view == nil {
		return ""
	}
	host, port, _ := net.SplitHostPort(a.HTTPAddr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost" // listening on every address: this machine's is one of them
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// HTTPAddr is the address the HTTP endpoints listen on ("" when off).
func (a *App) HTTPAddr() string {
	if a.http == nil {
		return ""
	}
	return a.http.Addr().String()
}

// Registry holds every metric of the process.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Catalog is the central's data this process serves from.
func (a *App) Catalog() *store.Catalog { return a.catalog }

// Plan is the store plan in use.
func (a *App) Plan() *store.Plan { return a.plan }

// Broker publishes and subscribes on the process's own broker connection.
func (a *App) Broker() Broker { return a.conn }

// Config is the configuration the process runs with.
func (a *App) Config() config.Config { return a.cfg }

// Pipeline is the flow from moves to coupons; its Counts say what it did.
func (a *App) Pipeline() *pipeline.Pipeline { return a.pipeline }

// Ready is closed once the broker serves (or is connected) and the pipeline is
// subscribed: from then on no event is missed.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Run runs every part until ctx is done or one of them fails. The broker
// starts first and stops last, so nothing in flight loses its connection.
func (a *App) Run(ctx context.Context) error {
	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	brokerErr := make(chan error, 1)
	go func() { brokerErr <- a.conn.Run(brokerCtx) }()
	brokerDone := false

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.pipeline.Run(gctx) })
	for _, f := range a.modelFiles {
		g.Go(func() error { return f.Run(gctx, a.cfg.Models.CheckEvery) })
	}
	if a.retrainer != nil {
		g.Go(func() error { return a.retrainer.Run(gctx, a.cfg.Models.RetrainEvery) })
	}
	g.Go(func() error { return a.loop.Run(gctx) })
	if a.client != nil {
		g.Go(func() error {
			return a.client.WatchModel(gctx, modelCheckEvery, readyCheckTimeout, a.log.With("component", "prediction_client"))
		})
	}
	g.Go(func() error {
		select {
		case <-a.conn.Ready():
		case <-gctx.Done():
			return nil
		}
		select {
		case <-a.pipeline.Ready():
			close(a.ready)
			a.log.Info("storeflow ready", "broker", a.conn.Addr(), "http", a.HTTPAddr())
			if a.view != nil {
				a.log.Info("the store on screen: open "+a.ViewURL(), "phone", a.ViewURL()+"phone/<customer id>")
			}
		case <-gctx.Done():
			return nil
		}
		if a.sim == nil {
			return nil
		}
		if a.accept != nil {
			if err := a.accept.Subscribe(a.conn, a.cfg.Pipeline.PredictionTopic); err != nil {
				return err
			}
			g.Go(func() error { return a.accept.Run(gctx) })
		}
		return a.sim.Run(gctx)
	})
	if a.view != nil {
		g.Go(func() error { return a.view.Run(gctx) })
	}
	if a.http != nil {
		srv := a.httpServer()
		if a.view != nil {
			srv.RegisterOnShutdown(a.view.Close) // its streams would hold Shutdown
		}
		g.Go(func() error {
			if err := srv.Serve(a.http); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("app: http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	g.Go(func() error {
		select {
		case err := <-brokerErr:
			brokerDone = true
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			return fmt.Errorf("app: broker: %w", err)
		case <-gctx.Done():
			return nil
		}
	})
	err := g.Wait()
	if !brokerDone {
		stopBroker()
		if berr := <-brokerErr; berr != nil && err == nil {
			err = fmt.Errorf("app: broker: %w", berr)
		}
	}
	if a.client != nil {
		a.client.Close()
	}
	a.closeSource()
	a.log.Info("storeflow stopped")
	return err
}
