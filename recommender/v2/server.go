// Package v2 is the Open Inference Protocol (KServe V2), both ends: the
// health, metadata and infer routes storeflow serves for its model, and the
// client's codec for any server that speaks it (KServe, MLServer, Triton,
// Seldon Core v2, OpenVINO Model Server, storeflow): one infer call per
// focus, one row per candidate coupon. The tensor codec is shared by both.
package v2

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/recommender/protocol"
)

// The model as the protocol names it: one input tensor of n feature rows,
// one output tensor of n probabilities.
const (
	ModelName    = "coupon"      // the model in /v2/models/{name}
	ModelVersion = "1"           // the only version served
	InputName    = "features"    // FP32 [n, recommender.NumFeatures], rows in recommender.FeatureNames order
	OutputName   = "probability" // FP32 [n], the chance the coupon is used
)

const (
	serverName    = "storeflow"
	modelPlatform = "storeflow"
	datatypeFP32  = "FP32"
	datatypeFP64  = "FP64"
)

// Register adds the protocol's routes, answered by s, to mux. The versioned
// paths (/v2/models/coupon/versions/1/...) are served too, as the protocol
// asks.
func Register(mux *http.ServeMux, s *protocol.Server) {
	h := handlers{s}
	mux.HandleFunc("GET /v2/health/live", h.live)
	mux.HandleFunc("GET /v2/health/ready", h.ready)
	mux.HandleFunc("GET /v2", h.serverMetadata)
	for _, base := range []string{"/v2/models/{model}", "/v2/models/{model}/versions/{version}"} {
		mux.HandleFunc("GET "+base, h.modelMetadata)
		mux.HandleFunc("GET "+base+"/ready", h.modelReady)
		mux.HandleFunc("POST "+base+"/infer", h.infer)
	}
}

type handlers struct{ s *protocol.Server }

func (h handlers) live(w http.ResponseWriter, _ *http.Request) {
	h.s.Reply(w, protocol.RouteHealth, http.StatusOK, map[string]bool{"live": true})
}

func (h handlers) ready(w http.ResponseWriter, _ *http.Request) {
	if !h.s.Ready() {
		h.s.Reply(w, protocol.RouteHealth, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	h.s.Reply(w, protocol.RouteHealth, http.StatusOK, map[string]bool{"ready": true})
}

func (h handlers) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	h.s.Reply(w, protocol.RouteMetadata, http.StatusOK, serverMetadata{Name: serverName, Version: h.s.Version(), Extensions: []string{}})
}

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (h handlers) modelMetadata(w http.ResponseWriter, r *http.Request) {
	if !h.knownModel(w, r, protocol.RouteMetadata) {
		return
	}
	h.s.Reply(w, protocol.RouteMetadata, http.StatusOK, modelMetadata{
		Name:     ModelName,
		Versions: []string{ModelVersion},
		Platform: modelPlatform,
		Inputs:   []tensorMetadata{{Name: InputName, Datatype: datatypeFP32, Shape: []int64{-1, recommender.NumFeatures}}},
		Outputs:  []tensorMetadata{{Name: OutputName, Datatype: datatypeFP32, Shape: []int64{-1}}},
	})
}

func (h handlers) modelReady(w http.ResponseWriter, r *http.Request) {
	if h.knownModel(w, r, protocol.RouteHealth) {
		h.ready(w, r)
	}
}

// knownModel answers 404 unless the path names this model (and, if it names
// a version, this version).
func (h handlers) knownModel(w http.ResponseWriter, r *http.Request, route protocol.Route) bool {
	if name := r.PathValue("model"); name != ModelName {
		h.s.Reply(w, route, http.StatusNotFound, protocol.ErrorBody{Error: "unknown model " + protocol.Quote(name)})
		return false
	}
	if v := r.PathValue("version"); v != "" && v != ModelVersion {
		h.s.Reply(w, route, http.StatusNotFound, protocol.ErrorBody{Error: "unknown version " + protocol.Quote(v) + " of model " + ModelName})
		return false
	}
	return true
}

// inferResponse is the infer answer; ID echoes the request's id.
type inferResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version"`
	ID           string         `json:"id,omitempty"`
	Outputs      []outputTensor `json:"outputs"`
}

type outputTensor struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int     `json:"shape"`
	Data     []float32 `json:"data"`
}

func (h handlers) infer(w http.ResponseWriter, r *http.Request) {
	if !h.knownModel(w, r, protocol.RouteInfer) {
		return
	}
	if !h.s.Ready() {
		h.s.NoModel(w, protocol.RouteInfer)
		return
	}
	call, err := decodeInferRequest(protocol.Body(w, r))
	if err != nil {
		h.s.Refuse(w, protocol.RouteInfer, err, false)
		return
	}
	probs, bad := h.s.Score(call.rows, call.n)
	if bad >= 0 {
		const n = recommender.NumFeatures
		h.s.NonFinite(w, protocol.RouteInfer, "inputs[0].data: row "+strconv.Itoa(bad), call.rows[bad*n:(bad+1)*n], false)
		return
	}
	data := make([]float32, call.n) // never nil: no rows answer "data":[]
	for i, p := range probs {
		data[i] = float32(p)
	}
	h.s.Reply(w, protocol.RouteInfer, http.StatusOK, inferResponse{
		ModelName:    ModelName,
		ModelVersion: ModelVersion,
		ID:           call.id,
		Outputs:      []outputTensor{{Name: OutputName, Datatype: datatypeFP32, Shape: []int{call.n}, Data: data}},
	})
}

// inferCall is a decoded, validated infer request.
type inferCall struct {
	id   string
	n    int
	rows []float32 // n rows of recommender.NumFeatures
}

type inferRequest struct {
	ID         string                     `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []inferInput               `json:"inputs"`
	Outputs    []requestedOutput          `json:"outputs"`
}

type inferInput struct {
	Name       string                     `json:"name"`
	Shape      []int64                    `json:"shape"`
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       json.RawMessage            `json:"data"`
}

type requestedOutput struct {
	Name       string                     `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// decodeInferRequest reads an infer body. Unknown fields are ignored, as
// protocol extensions add some; the one input must be InputName, FP32 or
// FP64, shape [n, recommender.NumFeatures] with n <= protocol.MaxRows, its
// data flat (row-major) or nested [[...], ...].
func decodeInferRequest(r io.Reader) (inferCall, error) {
	var req inferRequest
	if err := protocol.DecodeJSON(r, &req); err != nil {
		return inferCall{}, err
	}
	if len(req.Inputs) != 1 {
		return inferCall{}, protocol.BadField("inputs", "got %d inputs; model %s takes one, named %q", len(req.Inputs), ModelName, InputName)
	}
	for _, out := range req.Outputs {
		if out.Name != OutputName {
			return inferCall{}, protocol.BadField("outputs", "unknown output %s; model %s has one, named %q", protocol.Quote(out.Name), ModelName, OutputName)
		}
		if string(out.Parameters["binary_data"]) == "true" {
			return inferCall{}, protocol.BadField("outputs", "binary_data is not supported; outputs are JSON")
		}
	}
	in := req.Inputs[0]
	field := "inputs[0]"
	switch {
	case in.Name != InputName:
		return inferCall{}, protocol.BadField(field+".name", "unknown input %s; model %s takes one, named %q", protocol.Quote(in.Name), ModelName, InputName)
	case in.Datatype != datatypeFP32 && in.Datatype != datatypeFP64:
		return inferCall{}, protocol.BadField(field+".datatype", "%s: want FP32 or FP64", protocol.Quote(in.Datatype))
	case in.Parameters["binary_data_size"] != nil:
		return inferCall{}, protocol.BadField(field+".parameters", "binary tensor data is not supported; send JSON data")
	case len(in.Shape) != 2 || in.Shape[1] != recommender.NumFeatures || in.Shape[0] < 0:
		return inferCall{}, protocol.BadField(field+".shape", "%v: want [n, %d]", in.Shape, recommender.NumFeatures)
	case in.Shape[0] > protocol.MaxRows:
		return inferCall{}, protocol.BadField(field+".shape", "%d rows: at most %d per request", in.Shape[0], protocol.MaxRows)
	case len(in.Data) == 0 || string(in.Data) == "null":
		return inferCall{}, protocol.BadField(field+".data", "missing")
	}
	n := int(in.Shape[0])
	values, err := tensorData(in.Data, in.Shape, bitSize(in.Datatype), make([]float64, 0, n*recommender.NumFeatures))
	if err != nil {
		return inferCall{}, protocol.BadField(field+".data", "%v", err)
	}
	rows := make([]float32, len(values))
	for i, v := range values {
		if math.Abs(v) > math.MaxFloat32 {
			return inferCall{}, protocol.BadField(field+".data", "value %d (%v) does not fit FP32", i, v)
		}
		rows[i] = float32(v)
	}
	return inferCall{id: req.ID, n: n, rows: rows}, nil
}
