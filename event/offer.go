package event

import (
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
	var w struct{ customerID, couponID, ts []byte }
	if t := skipWS(b, 0); t == len(b) || b[t] != '{' {
		return Offer{}, &Error{Reason: ReasonMalformed, Detail: "not a JSON object of the prediction shape"}
	}
	shape := true // customer and coupon are objects (or null), as encoding/json would insist
	ok := object(b, func(key, val []byte) {
		switch {
		case keyIs(key, "customer"):
			shape = shape && memberID(val, &w.customerID)
		case keyIs(key, "coupon"):
			shape = shape && memberID(val, &w.couponID)
		case keyIs(key, "ts"):
			w.ts = val
		}
	})
	if !ok {
		return Offer{}, malformed(b)
	}
	if !shape {
		return Offer{}, &Error{Reason: ReasonMalformed, Detail: "not a JSON object of the prediction shape: customer and coupon must be objects"}
	}
	var o Offer
	var err error
	if o.CustomerID, err = decodeID(w.customerID); err != nil {
		if e, ok := err.(*Error); ok {
			e.Field = "customer.id"
		}
		return Offer{}, err
	}
	raw := w.couponID
	if isNull(raw) {
		return Offer{}, &Error{Reason: ReasonMissingField, Field: "coupon.id", Detail: "missing"}
	}
	if raw[0] == '"' && len(raw) >= 2 {
		raw = raw[1 : len(raw)-1]
	}
	f, ok := parseNumber(raw)
	if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
		return Offer{}, &Error{Reason: ReasonInvalidField, Field: "coupon.id", Detail: "want a non-negative integer, got " + clip(w.couponID)}
	}
	o.CouponID = int(f)
	if o.TS, err = decodeTS(w.ts); err != nil {
		return Offer{}, err
	}
	return o, nil
}

// memberID sets *id to the "id" member of obj, an object already validated,
// and reports whether obj is an object or null.
func memberID(obj []byte, id *[]byte) bool {
	switch obj[0] {
	case 'n':
		return true
	case '{':
		eachMember(obj, 0, 1, func(key, val []byte) {
			if keyIs(key, "id") {
				*id = val
			}
		})
		return true
	}
	return false
}
