package store

import (
	"errors"
	"fmt"
	"time"
)

// CentralLimits are what storeflow may ask of a remote central. Zero values
// turn each off.
type CentralLimits struct {
	MaxRPS          int           // CENTRAL_MAX_RPS: requests a second, at most, in bursts of up to as many
	BreakerFailures int           // CENTRAL_BREAKER_FAILURES: failed requests in a row that open the breaker
	BreakerCooldown time.Duration // CENTRAL_BREAKER_COOLDOWN: how long it stays open before a probe
}

// CentralLimits are the configured limits on a remote central.
func (c Config) CentralLimits() CentralLimits {
	return CentralLimits{MaxRPS: c.CentralMaxRPS, BreakerFailures: c.CentralBreakerFailures, BreakerCooldown: c.CentralBreakerCooldown}
}

// Validate checks the limits; errors name the variable and the value.
func (l CentralLimits) Validate() error {
	var errs []error
	if l.MaxRPS < 0 || l.MaxRPS > 1_000_000 {
		errs = append(errs, fmt.Errorf("CENTRAL_MAX_RPS=%d: must be between 0 (no bound) and 1000000", l.MaxRPS))
	}
	if l.BreakerFailures < 0 || l.BreakerFailures > 10000 {
		errs = append(errs, fmt.Errorf("CENTRAL_BREAKER_FAILURES=%d: must be between 0 (never open) and 10000", l.BreakerFailures))
	} else if l.BreakerFailures > 0 && l.BreakerCooldown <= 0 {
		errs = append(errs, fmt.Errorf("CENTRAL_BREAKER_COOLDOWN=%s: must be positive", l.BreakerCooldown))
	}
	return errors.Join(errs...)
}
