package event

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/storeflow/storeflow/store"
)

// AppendPresence appends the enter/exit payload {"id":"…","ts":…} to dst.
func AppendPresence(dst []byte, p Presence) []byte {
	dst = appendHead(dst, p.ID, p.TS)
	return append(dst, '}')
}

// AppendMove appends the move payload {"id":"…","ts":…,"x":…,"y":…} to dst.
// It writes the fields out rather than through appendHead: it runs for every
// move, and the extra call costs it a few percent.
func AppendMove(dst []byte, m Move) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	return append(appendPos(dst, m.X, m.Y), '}')
}

// AppendFocus appends the focus payload {"id":"…","ts":…,"dep":"…"[,"x":…,"y":…]} to dst.
func AppendFocus(dst []byte, f Focus) []byte {
	return appendSpot(dst, f)
}

// appendHead appends what every shopper event starts with: {"id":"…","ts":…
func appendHead(dst []byte, id string, ts int64) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"ts":`...)
	return strconv.AppendInt(dst, ts, 10)
}

// AppendBrowsing appends the browsing payload
// {"id":"…","ts":…[,"dep":"…"][,"x":…,"y":…]} to dst; "dep" is left out for
// an aisle.
func AppendBrowsing(dst []byte, b Browsing) []byte {
	return appendSpot(dst, Focus(b))
}

// appendSpot appends where a shopper is: the id, the ts, the department
// (left out for NoDepartment, which a focus never has) and the position if
// given.
func appendSpot(dst []byte, f Focus) []byte {
	dst = appendHead(dst, f.ID, f.TS)
	if f.Dep.Valid() {
		dst = append(dst, `,"dep":"`...)
		dst = append(dst, f.Dep.String()...)
		dst = append(dst, '"')
	}
	if f.HasPos {
		dst = appendPos(dst, f.X, f.Y)
	}
	return append(dst, '}')
}

// appendPos appends ,"x":…,"y":….
func appendPos(dst []byte, x, y int) []byte {
	dst = append(dst, `,"x":`...)
	dst = strconv.AppendInt(dst, int64(x), 10)
	dst = append(dst, `,"y":`...)
	return strconv.AppendInt(dst, int64(y), 10)
}

// appendString appends s as a JSON string, byte for byte as encoding/json
// writes it. Most strings are plain, so the common case is a copy; anything
// needing escapes (including the HTML characters encoding/json escapes) goes
// through encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
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

// Marshal encodes the message, byte for byte as encoding/json would (the
// golden test holds it to that), with one allocation instead of dozens: a
// coupon message is built for every coupon offered.
func (p Prediction) Marshal() ([]byte, error) {
	return AppendPrediction(make([]byte, 0, 256+400*len(p.Coupon.Products)), p)
}

// AppendPrediction appends the encoded message to dst. It fails only for a
// discount or price that is not a finite number.
func AppendPrediction(dst []byte, p Prediction) ([]byte, error) {
	var err error
	c := &p.Coupon
	dst = appendField(dst, `{"customer":{"id":`, p.Customer.ID)
	dst = append(dst, `},"coupon":{"id":`...)
	dst = strconv.AppendInt(dst, int64(c.ID), 10)
	dst = appendField(dst, `,"type":`, c.Type)
	dst = appendField(dst, `,"department":`, c.Department)
	dst = append(dst, `,"discount":`...)
	if dst, err = appendFloat(dst, c.Discount); err != nil {
		return nil, err
	}
	dst = append(dst, `,"how_many":`...)
	dst = strconv.AppendInt(dst, int64(c.HowMany), 10)
	dst = appendField(dst, `,"start_date":`, c.StartDate)
	dst = appendField(dst, `,"end_date":`, c.EndDate)
	dst = append(dst, `,"products":`...)
	if c.Products == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range c.Products {
			pr := &c.Products[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":`...)
			dst = strconv.AppendInt(dst, int64(pr.ID), 10)
			for _, f := range [...]struct{ key, v string }{
				{`,"name":`, pr.Name}, {`,"category":`, pr.Category}, {`,"sizes":`, pr.Sizes},
				{`,"vendor":`, pr.Vendor}, {`,"description":`, pr.Description},
			} {
				dst = appendField(dst, f.key, f.v)
			}
			dst = append(dst, `,"buy_price":`...)
			if dst, err = appendFloat(dst, pr.BuyPrice); err != nil {
				return nil, err
			}
			dst = appendField(dst, `,"department":`, pr.Department)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `},"ts":`...)
	dst = strconv.AppendInt(dst, p.TS, 10)
	return append(dst, '}'), nil
}

// appendField appends a string member: key, which carries the comma or brace
// before it and the colon, then s.
func appendField(dst []byte, key, s string) []byte {
	dst = append(dst, key...)
	return appendString(dst, s)
}

// appendFloat appends f as Float.MarshalJSON writes it.
func appendFloat(dst []byte, f Float) ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return nil, fmt.Errorf("event: unsupported value %v: want a finite number", float64(f))
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, float64(f), 'f', -1, 64)
	for _, c := range dst[start:] {
		if c == '.' {
			return dst, nil
		}
	}
	return append(dst, '.', '0'), nil
}
