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
	if t := skipWS(b, 0); t == len(b) || b[t] != '{' {
		return Offer{}, &Error{Reason: ReasonMalformed, Detail: "not a JSON object of the prediction shape"}
	}
	var w [len(offerNames)][]byte // raw values, in offerNames order
	twice := -1
	ok := object(b, offerNames[:], func(f int, val []byte) {
		if w[f] != nil && twice < 0 {
			twice = f
		}
		w[f] = val
	})
	if !ok {
		return Offer{}, malformed(b)
	}
	if twice >= 0 {
		return Offer{}, givenTwice(offerNames[twice])
	}
	customerID, err := memberID("customer", w[0])
	if err != nil {
		return Offer{}, err
	}
	couponID, err := memberID("coupon", w[1])
	if err != nil {
		return Offer{}, err
	}
	var o Offer
	if o.CustomerID, err = decodeID(customerID); err != nil {
		if e, ok := err.(*Error); ok {
			e.Field = "customer.id"
		}
		return Offer{}, err
	}
	raw := couponID
	if isNull(raw) {
		return Offer{}, &Error{Reason: ReasonMissingField, Field: "coupon.id", Detail: "missing"}
	}
	if raw[0] == '"' { // a JSON number in a string, escapes decoded
		var buf [16]byte
		raw, _ = unquote(buf[:0], raw[1:len(raw)-1])
		if scanNumber(raw, 0) != len(raw) {
			raw = nil // not a number: parseNumber refuses it
		}
	}
	f, ok := parseNumber(raw)
	if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
		return Offer{}, &Error{Reason: ReasonInvalidField, Field: "coupon.id", Detail: "want a non-negative integer, got " + quoted(couponID)}
	}
	o.CouponID = int(f)
	if o.TS, err = decodeTS(w[2]); err != nil {
		return Offer{}, err
	}
	return o, nil
}

// offerNames are the members DecodeOffer reads; idName the one it reads of
// customer and coupon.
var (
	offerNames = [...]string{"customer", "coupon", "ts"}
	idName     = []string{"id"}
)

// memberID returns the raw "id" member of obj, the value of the member name
// (already validated; nil when absent). obj must be an object or null, as
// encoding/json would insist.
func memberID(name string, obj []byte) (id []byte, err error) {
	switch {
	case obj == nil || obj[0] == 'n':
		return nil, nil
	case obj[0] != '{':
		return nil, &Error{Reason: ReasonMalformed, Detail: "not a JSON object of the prediction shape: " + name + " must be an object"}
	}
	twice := false
	eachMember(obj, 0, 1, idName, func(_ int, val []byte) {
		twice = twice || id != nil
		id = val
	})
	if twice {
		return nil, givenTwice(name + ".id")
	}
	return id, nil
}
