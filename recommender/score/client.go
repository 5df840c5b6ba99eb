package score

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/store"
)

// Codec is the client's side of /score, for protocol.NewClient: POST
// {PREDICTION_URL}/score. A /score service has no readiness route: any
// answer below 500 shows that it is up.
var Codec = protocol.Codec{
	Name:     recommender.ProtocolScore,
	Endpoint: func(base *url.URL, _ string) *url.URL { return base.JoinPath("score") },
	Encode:   EncodeRequest,
	Decode:   parseReply,
	Ready:    func(status int) bool { return status < 500 },
}

// The /score request as the original service takes it. customer_id goes as
// a string, whatever it looks like.
// The customer is its customer_info row.
type requestBody struct {
	Customer store.CustomerRow `json:"customer"`
	Coupons  []wireCoupon      `json:"coupons"`
}

type wireCoupon struct {
	CouponID          int     `json:"coupon_id"`
	CouponType        string  `json:"coupon_type"`
	Department        string  `json:"department"`
	Discount          int     `json:"discount"`
	HowMany           int     `json:"how_many_products_required"`
	ProductMeanPrice  float64 `json:"product_mean_price"`
	ProductsAvailable int     `json:"products_available"`
}

// EncodeRequest is the /score request for c and coupons, as the client
// sends it.
func EncodeRequest(c *store.Customer, coupons []store.Coupon) ([]byte, error) {
	req := requestBody{
		Customer: c.Row(),
		Coupons:  make([]wireCoupon, len(coupons)),
	}
	for i := range coupons {
		cp := &coupons[i]
		req.Coupons[i] = wireCoupon{
			CouponID: cp.ID, CouponType: string(cp.Type), Department: cp.Department.String(), Discount: cp.Discount,
			HowMany: cp.HowMany, ProductMeanPrice: cp.ProductMeanPrice, ProductsAvailable: cp.ProductsAvailable,
		}
	}
	b, err := json.Marshal(req)
	if err != nil { // only a NaN or infinite price gets here
		return nil, fmt.Errorf("customer %s: cannot encode the request: %w", c.ID, err)
	}
	return b, nil
}

// parseReply maps a /score answer back to out by coupon_id, in any
// order. Every coupon must be answered exactly once.
func parseReply(body []byte, coupons []store.Coupon, out []float64) error {
	var results []struct {
		CouponID   json.Number `json:"coupon_id"`
		Prediction *float64    `json:"prediction"`
	}
	if err := json.Unmarshal(body, &results); err != nil {
		return fmt.Errorf("want a JSON list of {coupon_id, customer_id, prediction}: %v", err)
	}
	if len(results) != len(coupons) {
		return fmt.Errorf("%d predictions for %d coupons", len(results), len(coupons))
	}
	filled := make([]bool, len(coupons))
	for k, r := range results {
		id, err := strconv.Atoi(r.CouponID.String())
		if err != nil {
			return fmt.Errorf("prediction %d: coupon_id %q is not an integer", k, r.CouponID)
		}
		if r.Prediction == nil {
			return fmt.Errorf("prediction %d: coupon %d has no prediction", k, id)
		}
		p := *r.Prediction
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("coupon %d: prediction %v is not a probability", id, p)
		}
		// Linear: a focus has a handful of coupons, fewer than a map pays for.
		i, seen := -1, false
		for j := range coupons {
			if coupons[j].ID == id {
				seen = true
				if !filled[j] {
					i = j
					break
				}
			}
		}
		switch {
		case i < 0 && seen:
			return fmt.Errorf("coupon %d answered twice", id)
		case i < 0:
			return fmt.Errorf("coupon %d was not asked for", id)
		}
		out[i], filled[i] = p, true
	}
	return nil // as many answers as coupons, none twice: all are filled
}
