package bench

import (
	"bytes"
	"testing"
)

func TestAppendRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		want []byte
	}{
		{"zero", 0, []byte{0x00}},
		{"one byte max", 127, []byte{0x7f}},
		{"two bytes min", 128, []byte{0x80, 0x01}},
		{"two bytes max", 16383, []byte{0xff, 0x7f}},
		{"three bytes min", 16384, []byte{0x80, 0x80, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := appendRemainingLength(nil, tc.n); !bytes.Equal(got, tc.want) {
				t.Errorf("appendRemainingLength(%d) = % x, want % x", tc.n, got, tc.want)
			}
		})
	}
}

func TestExposition(t *testing.T) {
	e := Exposition(`# HELP storeflow_focus_outcomes_total What became of each focus event.
# TYPE storeflow_focus_outcomes_total counter
storeflow_focus_outcomes_total{outcome="already_issued"} 8
storeflow_focus_outcomes_total{outcome="published"} 19992
storeflow_focus_outcomes_totally 5
storeflow_events_accepted_total{kind="move"} 240000
storeflow_events_accepted_total{kind="enter"} 20000
storeflow_coupons_published_total 1.9992e+04
`)
	for _, tc := range []struct {
		name, metric, match string
		want                float64
	}{
		{"one series", "storeflow_events_accepted_total", `kind="move"`, 240000},
		{"all series", "storeflow_events_accepted_total", "", 260000},
		{"no labels, exponent", "storeflow_coupons_published_total", "", 19992},
		{"a longer name is another metric", "storeflow_focus_outcomes_total", "", 20000},
		{"absent", "storeflow_broker_dropped_total", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.Sum(tc.metric, tc.match); got != tc.want {
				t.Errorf("sum(%s, %q) = %v, want %v", tc.metric, tc.match, got, tc.want)
			}
		})
	}
	got := e.byLabel("storeflow_focus_outcomes_total", "outcome")
	if len(got) != 2 || got["already_issued"] != 8 || got["published"] != 19992 {
		t.Errorf("byLabel = %v", got)
	}
}
