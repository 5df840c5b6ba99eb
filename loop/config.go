package loop

import (
	"errors"
	"fmt"
	"time"
)

// Config sets up the loop.
type Config struct {
	RedeemTopic string        `env:"REDEEM_TOPIC" envDefault:"customer/redeem"` // redemptions in: {"id","ts","coupon_id"}
	Window      time.Duration `env:"REDEEM_WINDOW" envDefault:"1h"`             // event time an offer waits for its redemption
	// HistoryFile is where settled offers are appended as coupon_history.csv
	// rows; "" keeps no file. Never DATA_DIR's by default: DATA_DIR is
	// input (a checkout, a read-only mount), and a history written into it
	// changes what the next start trains on.
	HistoryFile   string `env:"HISTORY_FILE"`
	MaxOpenOffers int    `env:"REDEEM_MAX_OPEN_OFFERS" envDefault:"100000"` // offers waiting at once; beyond, the oldest settles as not used
}

// Validate names the variable of each bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.RedeemTopic == "" {
		errs = append(errs, errors.New("REDEEM_TOPIC: must not be empty"))
	}
	if c.Window < time.Second || c.Window > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("REDEEM_WINDOW=%s: must be between 1s and 720h", c.Window))
	}
	if c.MaxOpenOffers < 1 || c.MaxOpenOffers > 10_000_000 {
		errs = append(errs, fmt.Errorf("REDEEM_MAX_OPEN_OFFERS=%d: must be between 1 and 10000000", c.MaxOpenOffers))
	}
	return errors.Join(errs...)
}
