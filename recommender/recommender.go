// Package recommender owns the prediction: the model that scores a shopper's
// chances of using each candidate coupon (its features, its trees and
// linear part, loading and saving it), the prediction settings, and the
// coupon selection rule (a pure function). Around it, each in a room of its
// own: the two protocols it is served and asked over, both ends side by side
// (recommender/score for the original POST /score, recommender/v2 for the
// Open Inference Protocol, recommender/protocol for what they share), and
// its training and evaluation (recommender/train).
package recommender

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/store"
)

// Config holds the prediction settings: where predictions come from and how
// a coupon is chosen from them.
type Config struct {
	Threshold float64 `env:"PREDICTION_THRESHOLD" envDefault:"0.2"` // a coupon must score at least this to be offered
	ModelFile string  `env:"MODEL_FILE"`                            // trained model (storeflow train); empty: train at startup
	Scorer    string  `env:"SCORER" envDefault:"model"`             // model, or random (uniform scores, for comparison)

	// The prediction client: set URL to ask a remote service instead of
	// the in-process model.
	URL         string        `env:"PREDICTION_URL"`                          // base URL of the prediction service
	Protocol    string        `env:"PREDICTION_PROTOCOL" envDefault:"score"`  // score (POST /score) or v2 (Open Inference Protocol)
	Model       string        `env:"PREDICTION_MODEL" envDefault:"coupon"`    // model name in v2 paths
	Timeout     time.Duration `env:"PREDICTION_TIMEOUT" envDefault:"1s"`      // per call, connection included
	Headers     string        `env:"PREDICTION_HEADERS"`                      // extra headers: "Name=value,Name2=value2"
	MaxInFlight int           `env:"PREDICTION_MAX_INFLIGHT" envDefault:"16"` // calls in flight at once

	// The circuit breaker in front of the service: after BreakerFailures
	// calls in a row that time out, find no connection or get a 5xx, no
	// call is made for BreakerCooldown; then one call probes.
	BreakerFailures int           `env:"PREDICTION_BREAKER_FAILURES" envDefault:"5"`  // 0: never open
	BreakerCooldown time.Duration `env:"PREDICTION_BREAKER_COOLDOWN" envDefault:"1s"` // open this long before a probe
}

// The values of SCORER and PREDICTION_PROTOCOL.
const (
	ScorerModel   = "model"
	ScorerRandom  = "random"
	ProtocolScore = "score"
	ProtocolV2    = "v2"
	DefaultModel  = "coupon"
)

// Validate checks the values; errors name the variable and the value.
func (c Config) Validate() error {
	errs := []error{c.ValidateThreshold()}
	if c.Scorer != ScorerModel && c.Scorer != ScorerRandom {
		errs = append(errs, fmt.Errorf("SCORER=%q: must be %q or %q", c.Scorer, ScorerModel, ScorerRandom))
	}
	return errors.Join(append(errs, c.ValidateClient())...)
}

// ValidateClient checks the prediction client's settings alone (the
// PREDICTION_* variables but the threshold): all a client needs.
func (c Config) ValidateClient() error {
	var errs []error
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("PREDICTION_URL=%q: want an http:// or https:// URL with a host", redact.URL(c.URL)))
		}
	}
	if c.Protocol != ProtocolScore && c.Protocol != ProtocolV2 {
		errs = append(errs, fmt.Errorf("PREDICTION_PROTOCOL=%q: must be %q or %q", c.Protocol, ProtocolScore, ProtocolV2))
	}
	if c.Model == "" || strings.ContainsAny(c.Model, "/?#% ") {
		errs = append(errs, fmt.Errorf("PREDICTION_MODEL=%q: want a model name without /, ?, #, %% or spaces", c.Model))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("PREDICTION_TIMEOUT=%s: must be positive", c.Timeout))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 10000 {
		errs = append(errs, fmt.Errorf("PREDICTION_MAX_INFLIGHT=%d: must be between 1 and 10000", c.MaxInFlight))
	}
	errs = append(errs, c.validateBreaker())
	if _, err := ParseHeaders(c.Headers); err != nil {
		errs = append(errs, fmt.Errorf("PREDICTION_HEADERS: %w", err)) // the value may hold a token: not echoed
	}
	return errors.Join(errs...)
}

func (c Config) validateBreaker() error {
	switch {
	case c.BreakerFailures < 0 || c.BreakerFailures > 10000:
		return fmt.Errorf("PREDICTION_BREAKER_FAILURES=%d: must be between 0 (never open) and 10000", c.BreakerFailures)
	case c.BreakerFailures > 0 && c.BreakerCooldown <= 0:
		return fmt.Errorf("PREDICTION_BREAKER_COOLDOWN=%s: must be positive", c.BreakerCooldown)
	}
	return nil
}

// ValidateThreshold checks PREDICTION_THRESHOLD alone: all the selection needs.
func (c Config) ValidateThreshold() error {
	if math.IsNaN(c.Threshold) || c.Threshold < 0 || c.Threshold > 1 {
		return fmt.Errorf("PREDICTION_THRESHOLD=%v: must be a probability between 0 and 1", c.Threshold)
	}
	return nil
}

// ParseHeaders parses PREDICTION_HEADERS: comma-separated Name=value pairs,
// split at the first "=" (a value may contain "=", as base64 tokens do).
func ParseHeaders(s string) (http.Header, error) {
	h := http.Header{}
	if strings.TrimSpace(s) == "" {
		return h, nil
	}
	for i, pair := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(pair, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || !validHeaderName(name) {
			return nil, fmt.Errorf("pair %d: want Name=value with a valid header name", i+1)
		}
		h.Add(name, value)
	}
	return h, nil
}

func validHeaderName(s string) bool {
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

// Scorer predicts, for each candidate coupon, the probability that the
// customer uses it. out has len(coupons) entries. Implementations must be safe
// for concurrent use.
type Scorer interface {
	Score(ctx context.Context, c *store.Customer, coupons []store.Coupon, out []float64) error
}

// RowScorer scores encoded feature rows: rows holds n rows of NumFeatures
// values each, row-major (the Encode order), and out receives n
// probabilities. It is what the prediction servers (/score and the Open
// Inference Protocol) need from a model. Implementations must be safe for
// concurrent use.
type RowScorer interface {
	ScoreRows(rows []float32, out []float64)
}

// ErrScore wraps every failure of a scorer, so callers can count it.
var ErrScore = errors.New("recommender: scoring failed")

// Best returns the index of the coupon to offer: the highest probability at or
// above threshold among the coupons skip does not exclude (skip may be nil);
// ties go to the lower coupon id so the choice is deterministic. ok is false
// when nothing qualifies. It allocates nothing.
func Best(coupons []store.Coupon, probs []float64, threshold float64, skip func(couponID int) bool) (idx int, ok bool) {
	idx = -1
	for i := range coupons {
		p := probs[i]
		if math.IsNaN(p) || p < threshold {
			continue
		}
		if skip != nil && skip(coupons[i].ID) {
			continue
		}
		if idx < 0 || p > probs[idx] || (p == probs[idx] && coupons[i].ID < coupons[idx].ID) {
			idx = i
		}
	}
	return idx, idx >= 0
}
