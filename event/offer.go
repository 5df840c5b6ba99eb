package event

import (
	"encoding/json"
	"fmt"
	"math"
)

// MaxPredictionPayload is the largest Prediction Results Message accepted: a
// department coupon lists many products.
const MaxPredictionPayload = 1 << 20

// Offer is what a shopper's phone needs to know of a Prediction Results
// Message: who got which coupon, when.
type Offer struct {
	CustomerID string
	CouponID   int
	TS         int64
}

// DecodeOffer reads customer.id, coupon.id and ts from a Prediction Results
// Message. The coupon id may be an integer (the schema) or a string of digits
// (the seed's example).
func DecodeOffer(b []byte) (Offer, error) {
	if len(b) > MaxPredictionPayload {
		return Offer{}, &Error{Reason: ReasonTooLarge, Detail: fmt.Sprintf("payload of %d bytes is over the %d byte limit", len(b), MaxPredictionPayload)}
	}
	var w struct {
		Customer struct {
			ID json.RawMessage `json:"id"`
		} `json:"customer"`
		Coupon struct {
			ID json.RawMessage `json:"id"`
		} `json:"coupon"`
		TS json.RawMessage `json:"ts"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return Offer{}, &Error{Reason: ReasonMalformed, Detail: "not a JSON object of the prediction shape: " + clipString(err.Error())}
	}
	var o Offer
	var err error
	if o.CustomerID, err = decodeID(w.Customer.ID); err != nil {
		if e, ok := err.(*Error); ok {
			e.Field = "customer.id"
		}
		return Offer{}, err
	}
	raw := w.Coupon.ID
	if isNull(raw) {
		return Offer{}, &Error{Reason: ReasonMissingField, Field: "coupon.id", Detail: "missing"}
	}
	if raw[0] == '"' && len(raw) >= 2 {
		raw = raw[1 : len(raw)-1]
	}
	f, ok := parseNumber(raw)
	if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
		return Offer{}, &Error{Reason: ReasonInvalidField, Field: "coupon.id", Detail: "want a non-negative integer, got " + clip(w.Coupon.ID)}
	}
	o.CouponID = int(f)
	if o.TS, err = decodeTS(w.TS); err != nil {
		return Offer{}, err
	}
	return o, nil
}
