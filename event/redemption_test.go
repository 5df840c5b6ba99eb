package event_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/event"
)

func TestDecodeRedemption(t *testing.T) {
	r := event.Redemption{ID: "127", TS: 192322800, CouponID: 34}
	good := []decoded[event.Redemption]{
		{"example", `{"id":"127","ts":192322800,"coupon_id":34}`, r},
		{"numeric id", `{"id":127,"ts":192322800,"coupon_id":34}`, r},
		{"float ts", `{"id":"127","ts":192322800.9,"coupon_id":34}`, r},
		{"coupon id float form", `{"id":"127","ts":192322800,"coupon_id":34.0}`, r},
		{"coupon id exponent", `{"id":"127","ts":192322800,"coupon_id":3.4e1}`, r},
		{"fields reversed", `{"coupon_id":34,"ts":192322800,"id":"127"}`, r},
		{"unknown fields ignored", `{"id":"127","ts":192322800,"coupon_id":34,"till":7,"x":1,"x":2}`, r},
		{"names escaped", `{"\u0069d":"127","ts":192322800,"coupon\u005fid":34}`, r},
		{"coupon id max int32", `{"id":"127","ts":192322800,"coupon_id":2147483647}`, event.Redemption{ID: "127", TS: 192322800, CouponID: math.MaxInt32}},
	}
	const head = `{"id":"127","ts":192322800`
	bad := append(commonBad(),
		bad{"missing coupon id", head + `}`, event.ReasonMissingField, "coupon_id"},
		bad{"null coupon id", head + `,"coupon_id":null}`, event.ReasonMissingField, "coupon_id"},
		bad{"coupon id 0", head + `,"coupon_id":0}`, event.ReasonInvalidField, "coupon_id"},
		bad{"negative coupon id", head + `,"coupon_id":-3}`, event.ReasonInvalidField, "coupon_id"},
		bad{"fractional coupon id", head + `,"coupon_id":3.5}`, event.ReasonInvalidField, "coupon_id"},
		bad{"coupon id over int32", head + `,"coupon_id":2147483648}`, event.ReasonInvalidField, "coupon_id"},
		bad{"coupon id string", head + `,"coupon_id":"34"}`, event.ReasonInvalidField, "coupon_id"},
		bad{"coupon id object", head + `,"coupon_id":{"id":34}}`, event.ReasonInvalidField, "coupon_id"},
		bad{"coupon id given twice", head + `,"coupon_id":34,"coupon_id":35}`, event.ReasonInvalidField, "coupon_id"},
		bad{"4 KB string coupon id", head + `,"coupon_id":"` + strings.Repeat("9", 4000) + `"}`, event.ReasonInvalidField, "coupon_id"},
	)
	// commonBad's payloads carry no coupon_id: each must fail on its own
	// problem first, which every one of them names.
	checkDecoder(t, "DecodeRedemption", event.DecodeRedemption, good, bad)
}

func TestAppendRedemptionRoundTrip(t *testing.T) {
	for _, r := range []event.Redemption{
		{ID: "127", TS: 192322800, CouponID: 34},
		{ID: `a"b\c<é>`, TS: 1, CouponID: 1},
		{ID: "x", TS: 253402300799, CouponID: math.MaxInt32},
	} {
		b := event.AppendRedemption([]byte("keep:"), r)
		if !strings.HasPrefix(string(b), "keep:") {
			t.Fatalf("AppendRedemption lost the prefix: %s", b)
		}
		if got, err := event.DecodeRedemption(b[len("keep:"):]); err != nil || got != r {
			t.Errorf("DecodeRedemption(%s) = %+v, %v; want %+v", b, got, err, r)
		}
	}
	if got := string(event.AppendRedemption(nil, event.Redemption{ID: "127", TS: 192322800, CouponID: 34})); got != `{"id":"127","ts":192322800,"coupon_id":34}` {
		t.Errorf("shape %s", got)
	}
}

// refRedemption reads a redemption payload with encoding/json and the
// README's rules.
func refRedemption(data []byte) (r event.Redemption, err error) {
	if len(data) > event.MaxPayload {
		return r, errRef("too large")
	}
	m, ok := refObject(data)
	if !ok {
		return r, errRef("not a JSON object")
	}
	var f [3]json.RawMessage
	for i, name := range []string{"id", "ts", "coupon_id"} {
		if f[i], err = refOne(m, name); err != nil {
			return r, err
		}
	}
	if r.ID, err = refID(f[0]); err != nil {
		return r, err
	}
	if r.TS, err = refTS(f[1]); err != nil {
		return r, err
	}
	if f[2] == nil || f[2][0] == '"' {
		return r, errRef("coupon_id missing or a string")
	}
	c, err := refNumber("coupon_id", f[2], 1, math.MaxInt32)
	if err != nil || c != math.Trunc(c) {
		return r, errRef("coupon_id not a whole number in [1, 2^31)")
	}
	r.CouponID = int(c)
	return r, nil
}

func FuzzDecodeRedemption(f *testing.F) {
	seed(f,
		`{"id":"127","ts":192322800,"coupon_id":34}`,
		`{"id":127,"ts":1.5,"coupon_id":3.4e1}`,
		`{"id":"127","ts":192322800,"coupon_id":0}`,
		`{"id":"127","ts":192322800,"coupon_id":"34"}`,
		`{"id":"127","ts":192322800,"coupon_id":34,"coupon_id":34}`,
		`{"id":"127","ts":192322800,"coupon\u005fid":2147483648}`,
		`{"id":"127","ts":192322800,"Coupon_id":34}`)
	fuzzEvent(f, event.DecodeRedemption, refRedemption, event.AppendRedemption, func(t *testing.T, r event.Redemption) {
		checkCommon(t, r.ID, r.TS)
		if r.CouponID < 1 {
			t.Fatalf("decoded coupon id %d is not positive", r.CouponID)
		}
	})
}
