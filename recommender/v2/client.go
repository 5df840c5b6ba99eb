package v2

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
	"github.com/storeflow/storeflow/store"
)

// Codec is the client's side of the protocol, for protocol.NewClient: POST
// {PREDICTION_URL}/v2/models/{PREDICTION_MODEL}/infer. Only 200 from the
// readiness routes means ready.
var Codec = protocol.Codec{
	Name:     recommender.ProtocolV2,
	Endpoint: func(base *url.URL, model string) *url.URL { return base.JoinPath("v2", "models", model, "infer") },
	Encode:   inferBody,
	Decode: func(body []byte, coupons []store.Coupon, out []float64) error {
		return parseInferReply(body, len(coupons), out)
	},
	Ready:      func(status int) bool { return status == http.StatusOK },
	ModelReady: func(base *url.URL, model string) *url.URL { return base.JoinPath("v2", "models", model, "ready") },
}

// inferBody writes the V2 request by hand: one FP32 input, flat row-major
// data, no requested outputs (servers name their output differently, and
// Triton refuses a name it does not know).
func inferBody(c *store.Customer, coupons []store.Coupon) ([]byte, error) {
	n := len(coupons)
	var row [recommender.NumFeatures]float32
	b := make([]byte, 0, 96+n*recommender.NumFeatures*8)
	b = append(b, `{"inputs":[{"name":"`+InputName+`","shape":[`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ","+strconv.Itoa(recommender.NumFeatures)+`],"datatype":"`+datatypeFP32+`","data":[`...)
	recommender.EncodeCustomer(c, row[:])
	for i := range coupons {
		recommender.EncodeCoupon(&coupons[i], row[:])
		for j, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("customer %s, coupon %d: feature %s is %v", c.ID, coupons[i].ID, recommender.FeatureNames[j], v)
			}
			if i > 0 || j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
		}
	}
	return append(b, "]}]}"...), nil
}

type inferReply struct {
	Outputs []struct {
		Name     string          `json:"name"`
		Datatype string          `json:"datatype"`
		Shape    []int64         `json:"shape"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// outputNames are the names a probability output goes by, best first: ours,
// MLServer's sklearn runtime, KServe's and Triton's defaults.
var outputNames = []string{OutputName, "predict_proba", "output-0", "output0", "OUTPUT0"}

// parseInferReply takes the probabilities of n rows out of a V2 answer.
// It picks the float output by name (outputNames), or the only float output
// there is; integer outputs (class labels) are passed over. The shape may
// be [n], [n,1], or [n,2] (sklearn predict_proba: column 1 is the positive
// class), the data flat or nested.
func parseInferReply(body []byte, n int, out []float64) error {
	var reply inferReply
	if err := json.Unmarshal(body, &reply); err != nil {
		return fmt.Errorf("want a V2 infer response: %v", err)
	}
	pick, floats := -1, 0
	for i, o := range reply.Outputs {
		if !isFloatType(o.Datatype) {
			continue
		}
		floats++
		if pick < 0 || rank(o.Name) < rank(reply.Outputs[pick].Name) {
			pick = i
		}
	}
	if pick < 0 || (floats > 1 && rank(reply.Outputs[pick].Name) == len(outputNames)) {
		got := make([]string, len(reply.Outputs))
		for i, o := range reply.Outputs {
			got[i] = protocol.Quote(o.Name) + " " + protocol.Quote(o.Datatype)
		}
		return fmt.Errorf("no probability output among [%s]: want a float output named %s or the only float output",
			strings.Join(got, ", "), strings.Join(outputNames, ", "))
	}
	o := reply.Outputs[pick]
	cols := int64(1)
	switch {
	case len(o.Shape) == 2 && (o.Shape[1] == 1 || o.Shape[1] == 2):
		cols = o.Shape[1]
	case len(o.Shape) != 1:
		return fmt.Errorf("output %s: shape %v: want [n], [n,1] or [n,2]", protocol.Quote(o.Name), o.Shape)
	}
	if o.Shape[0] != int64(n) {
		return fmt.Errorf("output %s: %d rows for %d coupons", protocol.Quote(o.Name), o.Shape[0], n)
	}
	if len(o.Data) == 0 {
		return fmt.Errorf("output %s: no data", protocol.Quote(o.Name))
	}
	values, err := tensorData(o.Data, o.Shape, bitSize(o.Datatype), make([]float64, 0, int64(n)*cols))
	if err != nil {
		return fmt.Errorf("output %s: %v", protocol.Quote(o.Name), err)
	}
	for i := range n {
		p := values[int64(i)*cols+cols-1]
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("output %s: row %d: %v is not a probability", protocol.Quote(o.Name), i, p)
		}
		out[i] = p
	}
	return nil
}

func isFloatType(datatype string) bool {
	switch datatype {
	case datatypeFP32, datatypeFP64, "FP16", "BF16":
		return true
	}
	return false
}

// rank is a name's place in outputNames, len(outputNames) if absent.
func rank(name string) int {
	for i, n := range outputNames {
		if n == name {
			return i
		}
	}
	return len(outputNames)
}
