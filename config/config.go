// Package config owns the settings: one Config composed of each package's own
// Config (the env tags live next to the code that uses the knob), loaded from
// the environment once and validated before anything starts.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/liveview"
	"github.com/storeflow/storeflow/loop"
	"github.com/storeflow/storeflow/pipeline"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/live"
	"github.com/storeflow/storeflow/simulator"
	"github.com/storeflow/storeflow/store"
)

// Config is every setting of the program.
type Config struct {
	LogLevel  LogLevel `env:"LOG_LEVEL" envDefault:"info"`           // debug, info, warn(ing), error
	LogFormat string   `env:"LOG_FORMAT" envDefault:"text"`          // text or json
	LogFile   string   `env:"LOG_FILE"`                              // also append logs to this file (the seeds' messages.log)
	HTTPAddr  string   `env:"HTTP_ADDR" envDefault:"127.0.0.1:8000"` // HTTP endpoints; "" = off

	// What one client of the HTTP endpoints can hold.
	HTTPReadTimeout    time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"10s"`     // a request, headers and body
	HTTPWriteTimeout   time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"10s"`    // each write of an answer
	HTTPIdleTimeout    time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`     // a keep-alive connection between requests
	HTTPMaxConnections int           `env:"HTTP_MAX_CONNECTIONS" envDefault:"1000"` // open at once; beyond, closed at accept

	// Testing without MQTT (seeds 000 and 002). Either mode replaces the broker
	// with broker.Mock, which only logs what is published; TESTING_NO_MQTT also
	// turns the simulator off. Either mode turns the test endpoints on.
	TestingNoMQTT bool `env:"TESTING_NO_MQTT" envDefault:"false"`
	// SimulatorOverridden: Load turned the simulator off for TESTING_NO_MQTT.
	SimulatorOverridden bool `env:"-"`
	TestingMockMQTT     bool `env:"TESTING_MOCK_MQTT" envDefault:"false"`
	HTTPTestEndpoints   bool `env:"HTTP_TEST_ENDPOINTS" envDefault:"false"` // /mock_entry, /mock_focus, /produce_*

	Store       store.Config
	Broker      broker.Config
	Pipeline    pipeline.Config
	Recommender recommender.Config
	Simulator   simulator.Config
	View        liveview.Config
	Experiment  experiment.Config
	Models      live.Config // keeping the models current: reload, retraining
	Loop        loop.Config // offers, redemptions, the history

	// CustomersFileSet is true when CUSTOMERS_LIST_FILE was given explicitly:
	// then a missing file is an error, while the default customers.csv is
	// optional (the catalog's customers are used without it).
	CustomersFileSet bool `env:"-"`

	set map[string]string // the variables that were given, for Redacted
}

// HTTPOff as HTTP_ADDR turns the HTTP endpoints off.
const HTTPOff = "off"

// Load reads the settings from environ (nil: the process environment) and
// validates them. The error names every bad variable with its value.
func Load(environ map[string]string) (Config, error) {
	if environ == nil {
		environ = processEnv()
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return Config{}, fmt.Errorf("config: %w", explain(err, environ))
	}
	_, c.CustomersFileSet = environ["CUSTOMERS_LIST_FILE"]
	c.set = map[string]string{}
	for _, p := range Params() {
		if v, ok := environ[p.Key]; ok {
			c.set[p.Key] = v
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	// TESTING_NO_MQTT means events come from the test endpoints only: the
	// simulator is off, whatever SIMULATOR_ENABLED says (the seed's mode).
	if c.TestingNoMQTT && c.Simulator.Enabled {
		c.Simulator.Enabled = false
		c.SimulatorOverridden = true
	}
	return c, nil
}

// LoadWith is Load of the process environment with overrides on top.
func LoadWith(overrides map[string]string) (Config, error) {
	environ := processEnv()
	for k, v := range overrides {
		environ[k] = v
	}
	return Load(environ)
}

// Validate checks every part and the rules that span parts.
func (c Config) Validate() error {
	errs := []error{c.Store.Validate(), c.Broker.Validate(), c.Pipeline.Validate(), c.Recommender.Validate(), c.Simulator.Validate(), c.View.Validate(), c.Experiment.Validate(), c.Models.Validate(), c.Loop.Validate()}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: must be text or json", c.LogFormat))
	}
	if c.MockMQTT() && c.Broker.Host != "" {
		errs = append(errs, fmt.Errorf("MQTT_HOST=%q with %s=true: the testing mode replaces MQTT with a mock, so the broker would never be used: unset one", redact.URLs(c.Broker.Host), c.mockVar()))
	}
	errs = append(errs, c.validateSharing()...)
	errs = append(errs, c.validateRetraining()...)
	if c.HTTPAddr != HTTPOff {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("HTTP_ADDR=%q: want host:port: %v", c.HTTPAddr, err))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HTTP_READ_TIMEOUT", c.HTTPReadTimeout}, {"HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout}} {
		if d.v < time.Millisecond || d.v > time.Hour {
			errs = append(errs, fmt.Errorf("%s=%s: must be between 1ms and 1h", d.name, d.v))
		}
	}
	if c.HTTPMaxConnections < 1 || c.HTTPMaxConnections > 1_000_000 {
		errs = append(errs, fmt.Errorf("HTTP_MAX_CONNECTIONS=%d: must be between 1 and 1000000", c.HTTPMaxConnections))
	}
	for _, t := range []struct{ name, v string }{
		{"ENTER_TOPIC", c.Simulator.EnterTopic}, {"MOVE_TOPIC", c.Simulator.MoveTopic}, {"EXIT_TOPIC", c.Simulator.ExitTopic},
		{"ENTRY_EVENT_TOPIC_NAME", c.Pipeline.EntryTopic}, {"FOCUS_EVENT_TOPIC_NAME", c.Pipeline.FocusTopic},
		{"COUPON_PREDICTION_TOPIC_NAME", c.Pipeline.PredictionTopic}, {"BROWSING_TOPIC", c.Pipeline.BrowsingTopic},
		{"REDEEM_TOPIC", c.Loop.RedeemTopic},
	} {
		if err := broker.ValidTopic(t.v); t.v != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", t.name, t.v, err))
		}
	}
	return errors.Join(errs...)
}

// validateRetraining checks that RETRAIN_EVERY has a model to retrain (the
// in-process one) and a history to train on.
func (c Config) validateRetraining() []error {
	every := c.Models.RetrainEvery
	if every <= 0 {
		return nil
	}
	var errs []error
	if c.Recommender.URL != "" || c.Recommender.Scorer != recommender.ScorerModel {
		errs = append(errs, fmt.Errorf("RETRAIN_EVERY=%s retrains the in-process model: with PREDICTION_URL or SCORER=%s there is none in use", every, recommender.ScorerRandom))
	}
	if live.History(c.Loop.HistoryFile, c.Store.DataDir) == "" {
		errs = append(errs, fmt.Errorf("RETRAIN_EVERY=%s needs a history to train on: set HISTORY_FILE, or DATA_DIR (its coupon_history.csv)", every))
	}
	return errs
}

// validateSharing checks the rules of several instances sharing the work:
// a share group splits each intake topic between instances, so the shopper
// state must be shared (DWELL_STATE=redis, in REDIS_URL) and the broker one
// they all reach (MQTT_HOST).
func (c Config) validateSharing() []error {
	var errs []error
	p := c.Pipeline
	if p.ShareGroup != "" {
		if p.DwellState != pipeline.DwellStateRedis || c.Store.RedisURL == "" {
			errs = append(errs, fmt.Errorf("MQTT_SHARE_GROUP=%q needs DWELL_STATE=redis and REDIS_URL (DWELL_STATE=%q, REDIS_URL %s): the instances of a group each get a share of a shopper's moves, so the dwell state must be shared",
				p.ShareGroup, p.DwellState, setOrNot(c.Store.RedisURL)))
		}
		if c.Broker.Host == "" {
			errs = append(errs, fmt.Errorf("MQTT_SHARE_GROUP=%q needs an external broker (MQTT_HOST): the embedded broker serves one instance", p.ShareGroup))
		}
	}
	if p.DwellState == pipeline.DwellStateRedis && c.Store.RedisURL == "" {
		errs = append(errs, errors.New("DWELL_STATE=redis needs REDIS_URL: the Redis that holds the shoppers' dwell state"))
	}
	return errs
}

func setOrNot(v string) string {
	if v == "" {
		return "unset"
	}
	return "set"
}

// IsSet reports whether the environment gave the variable key (a default
// is not set).
func (c Config) IsSet(key string) bool {
	_, ok := c.set[key]
	return ok
}

// MockMQTT reports whether a testing mode replaces the broker with a mock.
func (c Config) MockMQTT() bool { return c.TestingNoMQTT || c.TestingMockMQTT }

// TestEndpoints reports whether the HTTP test endpoints are served.
func (c Config) TestEndpoints() bool { return c.HTTPTestEndpoints || c.MockMQTT() }

// mockVar names the testing mode that is on, for error messages.
func (c Config) mockVar() string {
	switch {
	case c.TestingNoMQTT && c.TestingMockMQTT:
		return "TESTING_NO_MQTT=true and TESTING_MOCK_MQTT"
	case c.TestingNoMQTT:
		return "TESTING_NO_MQTT"
	}
	return "TESTING_MOCK_MQTT"
}

// Redacted returns the variables that were set, as slog key-value pairs for
// the start-up log, with secrets masked.
func (c Config) Redacted() []any {
	var out []any
	for _, p := range Params() {
		v, ok := c.set[p.Key]
		if !ok {
			continue
		}
		out = append(out, p.Key, p.Show(v))
	}
	return out
}

// Show is v as a log line or a listing may show it: a secret masked, URLs
// without their credentials.
func (p Param) Show(v string) string {
	switch {
	case p.Secret && v != "":
		return redact.Mask
	case urlSetting(p.Key):
		return redact.URLs(v)
	}
	return v
}

// Setting is one variable's value in effect, as Show shows it.
type Setting struct {
	Param
	Value string // what the program uses: the environment's value, else the default
	Set   bool   // the environment gave it
}

// Effective lists every variable with the value in effect in environ (nil:
// the process environment), secrets masked, whether or not the whole is
// valid (Load says that).
func Effective(environ map[string]string) []Setting {
	if environ == nil {
		environ = processEnv()
	}
	var out []Setting
	for _, p := range Params() {
		v, ok := environ[p.Key]
		if !ok {
			v = p.Default
		}
		out = append(out, Setting{Param: p, Value: p.Show(v), Set: ok})
	}
	return out
}

// Param describes one environment variable.
type Param struct {
	Key     string
	Default string
	Secret  bool
}

// secrets are never logged.
var secrets = map[string]bool{"MQTT_PASSWORD": true, "PREDICTION_HEADERS": true, "REDIS_PASSWORD": true}

// urlSetting reports whether key holds URLs (MQTT_HOST a list of them, every
// *_URL one), which are logged without their credentials.
func urlSetting(key string) bool { return key == "MQTT_HOST" || strings.HasSuffix(key, "_URL") }

// Params lists every environment variable the program reads, once each, sorted.
func Params() []Param {
	fps, err := env.GetFieldParams(&Config{})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Param
	for _, fp := range fps {
		if fp.Key == "-" || seen[fp.Key] {
			continue
		}
		seen[fp.Key] = true
		out = append(out, Param{Key: fp.Key, Default: fp.DefaultValue, Secret: secrets[fp.Key]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func processEnv() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// explain rewrites the env library's parse errors, which name Go struct
// fields, into messages that name the variable and the value the user gave.
func explain(err error, environ map[string]string) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	keys := fieldKeys(reflect.TypeOf(Config{}))
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			out = append(out, e)
			continue
		}
		named := false
		for _, k := range keys[pe.Name] {
			if v, ok := environ[k]; ok {
				out = append(out, fmt.Errorf("%s=%q: not a valid %s: %v", k, v, typeWord(pe.Type), unwrapAll(pe.Err)))
				named = true
			}
		}
		if !named {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func typeWord(t reflect.Type) string {
	switch t.String() {
	case "time.Duration":
		return "duration (like 10s, 1m30s)"
	case "bool":
		return "boolean (true or false)"
	case "float64":
		return "number"
	case "int", "int64", "uint8":
		return "whole number"
	case "config.LogLevel":
		return "log level"
	}
	return t.String()
}

// fieldKeys maps each struct field name to the env keys of the fields with
// that name, through nested structs.
func fieldKeys(t reflect.Type) map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" && key != "-" {
				out[f.Name] = append(out[f.Name], key)
			} else if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
				walk(f.Type)
			}
		}
	}
	walk(t)
	return out
}

// LogLevel is a slog level that also accepts the seeds' Python names
// ("warning", "critical").
type LogLevel struct{ slog.Level }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LogLevel) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "warning":
		l.Level = slog.LevelWarn
		return nil
	case "critical", "fatal":
		l.Level = slog.LevelError
		return nil
	}
	if err := l.Level.UnmarshalText(b); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}
