package event

import (
	"math"
	"strconv"
)

// Redemption is a shopper using a coupon at the till: the payload of
// REDEEM_TOPIC and of POST /redeem.
type Redemption struct {
	ID       string // customer id
	TS       int64  // unix seconds
	CouponID int
}

// redemptionNames are the members DecodeRedemption reads, in order.
var redemptionNames = []string{"id", "ts", "coupon_id"}

// DecodeRedemption decodes a redemption payload:
// {"id":"127","ts":192322800,"coupon_id":34}. The id and ts read as every
// event's do; coupon_id is a positive integer. Unknown members are ignored and
// one the decoder reads, given twice, is refused, as for every event.
func DecodeRedemption(b []byte) (Redemption, error) {
	if err := checkObject(b); err != nil {
		return Redemption{}, err
	}
	var w [3][]byte
	twice := -1
	ok := object(b, redemptionNames, func(f int, val []byte) {
		if w[f] != nil && twice < 0 {
			twice = f
		}
		w[f] = val
	})
	if !ok {
		return Redemption{}, malformed(b)
	}
	if twice >= 0 {
		return Redemption{}, givenTwice(redemptionNames[twice])
	}
	id, err := decodeID(w[0])
	if err != nil {
		return Redemption{}, err
	}
	ts, err := decodeTS(w[1])
	if err != nil {
		return Redemption{}, err
	}
	raw := w[2]
	if isNull(raw) {
		return Redemption{}, &Error{Reason: ReasonMissingField, Field: "coupon_id", Detail: "missing"}
	}
	f, ok := parseNumber(raw)
	if !ok || f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
		return Redemption{}, &Error{Reason: ReasonInvalidField, Field: "coupon_id", Detail: "want a positive integer, got " + quoted(raw)}
	}
	return Redemption{ID: id, TS: ts, CouponID: int(f)}, nil
}

// AppendRedemption appends the redemption payload
// {"id":"…","ts":…,"coupon_id":…} to dst.
func AppendRedemption(dst []byte, r Redemption) []byte {
	dst = appendHead(dst, r.ID, r.TS)
	dst = append(dst, `,"coupon_id":`...)
	dst = strconv.AppendInt(dst, int64(r.CouponID), 10)
	return append(dst, '}')
}
