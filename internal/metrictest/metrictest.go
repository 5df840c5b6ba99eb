// Package metrictest reads metrics back in tests, by name and labels, from
// the registry a part records them in.
package metrictest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sum adds up the counters and gauges named name over the series that carry
// every label given as "name=value". A metric with no such series yet sums
// to 0.
func Sum(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	sum, _ := sum(t, g, name, labels)
	return sum
}

// Value is Sum for a metric that must be registered already: the test fails
// if no series of name carries the labels.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	sum, found := sum(t, g, name, labels)
	if !found {
		t.Fatalf("metric %s%v not registered", name, labels)
	}
	return sum
}

func sum(t testing.TB, g prometheus.Gatherer, name string, labels []string) (sum float64, found bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				found = true
			}
		}
	}
	return sum, found
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for _, l := range labels {
		name, value, _ := strings.Cut(l, "=")
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == name && lp.GetValue() == value {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
