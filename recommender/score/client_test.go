package score

import (
	"testing"

	"github.com/storeflow/storeflow/recommender/internal/fixture"
)

// FuzzParseScoreReply checks the /score answer decoder on any body.
func FuzzParseScoreReply(f *testing.F) {
	f.Add([]byte(`[{"coupon_id":4,"customer_id":"c","prediction":0.5},{"coupon_id":7,"prediction":0.25},{"coupon_id":9,"prediction":1}]`))
	f.Add([]byte(`[{"coupon_id":"4","prediction":0.5}]`))
	// The original prediction service's answer form (testdata/original).
	f.Add([]byte(`[{"coupon_id":"4","customer_id":"1","prediction":0.6108783426},{"coupon_id":"9","customer_id":"1","prediction":0.3721197586}]`))
	coupons := fixture.Coupons()[:3]
	f.Fuzz(func(t *testing.T, body []byte) {
		out := []float64{-1, -1, -1}
		if err := parseReply(body, coupons, out); err != nil {
			return
		}
		for i, p := range out {
			if !(p >= 0 && p <= 1) {
				t.Fatalf("coupon %d: accepted %v", coupons[i].ID, p)
			}
		}
	})
}
