package liveview

import (
	"errors"
	"fmt"
)

// Config sets up the live view.
type Config struct {
	Enabled    bool `env:"VIEW_ENABLED" envDefault:"true"`   // serve /api/store and /api/events
	MaxViewers int  `env:"VIEW_MAX_VIEWERS" envDefault:"32"` // open event streams at once; beyond, 503
}

// Validate names the variable of each bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.Enabled && c.MaxViewers < 1 {
		errs = append(errs, fmt.Errorf("VIEW_MAX_VIEWERS=%d: must be at least 1", c.MaxViewers))
	}
	return errors.Join(errs...)
}
