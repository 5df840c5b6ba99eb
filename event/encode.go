package event

import (
	"encoding/json"
	"strconv"

	"github.com/storeflow/storeflow/store"
)

// AppendPresence appends the enter/exit payload {"id":"…","ts":…} to dst.
func AppendPresence(dst []byte, p Presence) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, p.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, p.TS, 10)
	return append(dst, '}')
}

// AppendMove appends the move payload {"id":"…","ts":…,"x":…,"y":…} to dst.
func AppendMove(dst []byte, m Move) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	dst = append(dst, `,"x":`...)
	dst = strconv.AppendInt(dst, int64(m.X), 10)
	dst = append(dst, `,"y":`...)
	dst = strconv.AppendInt(dst, int64(m.Y), 10)
	return append(dst, '}')
}

// AppendFocus appends the focus payload {"id":"…","ts":…,"dep":"…"[,"x":…,"y":…]} to dst.
func AppendFocus(dst []byte, f Focus) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, f.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, f.TS, 10)
	dst = append(dst, `,"dep":"`...)
	dst = append(dst, f.Dep.String()...)
	dst = append(dst, '"')
	if f.HasPos {
		dst = append(dst, `,"x":`...)
		dst = strconv.AppendInt(dst, int64(f.X), 10)
		dst = append(dst, `,"y":`...)
		dst = strconv.AppendInt(dst, int64(f.Y), 10)
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string. Ids are short and plain, so the
// common case is a copy; anything needing escapes goes through encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Prediction is the Prediction Results Message of seed 000, published on
// COUPON_PREDICTION_TOPIC_NAME.
type Prediction struct {
	Customer PredictionCustomer `json:"customer"`
	Coupon   PredictionCoupon   `json:"coupon"`
	TS       int64              `json:"ts"`
}

// PredictionCustomer names the shopper the coupon is for.
type PredictionCustomer struct {
	ID string `json:"id"`
}

// PredictionCoupon is the coupon offered, with the products it covers.
type PredictionCoupon struct {
	ID         int                 `json:"id"`
	Type       string              `json:"type"`
	Department string              `json:"department"`
	Discount   Float               `json:"discount"`
	HowMany    int                 `json:"how_many"`
	StartDate  string              `json:"start_date"`
	EndDate    string              `json:"end_date"`
	Products   []PredictionProduct `json:"products"`
}

// PredictionProduct is one product covered by the coupon.
type PredictionProduct struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Category    string `json:"category"`
	Sizes       string `json:"sizes"`
	Vendor      string `json:"vendor"`
	Description string `json:"description"`
	BuyPrice    Float  `json:"buy_price"`
	Department  string `json:"department"`
}

// Float is a float64 that always carries a decimal point on the wire (14.0,
// not 14), as the seed's example shows, so that typed consumers read a float.
type Float float64

// MarshalJSON writes the shortest exact form, with ".0" added to whole numbers.
func (f Float) MarshalJSON() ([]byte, error) {
	b := strconv.AppendFloat(make([]byte, 0, 24), float64(f), 'f', -1, 64)
	for _, c := range b {
		if c == '.' {
			return b, nil
		}
	}
	return append(b, '.', '0'), nil
}

// NewPrediction builds the message for one coupon offered to one shopper.
func NewPrediction(customerID string, ts int64, c store.Coupon, products []store.Product) Prediction {
	p := Prediction{
		Customer: PredictionCustomer{ID: customerID},
		Coupon: PredictionCoupon{
			ID:         c.ID,
			Type:       string(c.Type),
			Department: c.Department.String(),
			Discount:   Float(c.Discount),
			HowMany:    c.HowMany,
			StartDate:  c.Start.String(),
			EndDate:    c.End.String(),
			Products:   make([]PredictionProduct, len(products)),
		},
		TS: ts,
	}
	for i, pr := range products {
		p.Coupon.Products[i] = PredictionProduct{
			ID:          pr.ID,
			Name:        pr.Name,
			Category:    pr.Category,
			Sizes:       pr.Sizes,
			Vendor:      pr.Vendor,
			Description: pr.Description,
			BuyPrice:    Float(pr.BuyPrice),
			Department:  pr.Department.String(),
		}
	}
	return p
}

// Marshal encodes the message.
func (p Prediction) Marshal() ([]byte, error) { return json.Marshal(p) }
