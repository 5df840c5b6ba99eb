package e2e

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeMetric is one metric of README's metrics table: its name (a prefix
// when the table gives name_*) and the label names it lists.
type readmeMetric struct {
	name   string
	prefix bool
	labels []string // sorted; nil for none
}

// metricCell is a metric as the table's first column writes it:
// `storeflow_x_total{kind,reason}`, `storeflow_y`, `storeflow_simulator_*`.
var metricCell = regexp.MustCompile("`(storeflow_[a-z0-9_]*)(\\*)?(?:\\{([a-z_,]+)\\})?`")

// readmeMetrics reads the metrics table of the README: the rows of the table
// that follows the "## Metrics" heading, each naming one or more metrics in
// its first column.
func readmeMetrics(t *testing.T, path string) []readmeMetric {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []readmeMetric
	section, table := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section = line == "## Metrics"
			table = false
			continue
		case !section:
			continue
		case strings.HasPrefix(line, "|"):
			table = true
		case table:
			section = false // the table has ended
			continue
		default:
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range metricCell.FindAllStringSubmatch(first, -1) {
			rm := readmeMetric{name: m[1], prefix: m[2] != ""}
			if m[3] != "" {
				rm.labels = strings.Split(m[3], ",")
				slices.Sort(rm.labels)
			}
			out = append(out, rm)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("%s: %d metrics found in the metrics table; is the heading still \"## Metrics\"?", path, len(out))
	}
	return out
}

// exportedMetrics gathers the storeflow_ metrics of the systems: each name
// with the label names its series carry.
func exportedMetrics(t *testing.T, systems ...*system) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, s := range systems {
		mfs, err := s.app.Registry().Gather()
		if err != nil {
			t.Fatalf("gather metrics: %v", err)
		}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "storeflow_") {
				continue
			}
			labels := out[mf.GetName()]
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if !slices.Contains(labels, lp.GetName()) {
						labels = append(labels, lp.GetName())
					}
				}
			}
			slices.Sort(labels)
			out[mf.GetName()] = labels
		}
	}
	return out
}

// The metrics a running storeflow serves are the ones README's metrics table
// lists, by name and label names, both ways. Two processes run every part
// between them: one with the embedded broker, the simulator (with its ground
// truth) and the test endpoints, which is also the central and the
// prediction service of the other, connected to an external mosquitto.
// Nothing happens in either (the simulator runs ten thousand times slower
// than real time): every series must be served from the start, at zero, not
// appear with the first event.
func TestMetricsAreTheReadmes(t *testing.T) {
	listed := readmeMetrics(t, "../README.md")
	peer := startSystem(t, map[string]string{"SIMULATOR_ENABLED": "true", "SIMULATOR_SPEED": "0.0001", "HTTP_TEST_ENDPOINTS": "true"})
	url := "http://" + peer.app.HTTPAddr()
	remote, _ := startExternal(t, map[string]string{"CENTRAL_URL": url, "PREDICTION_URL": url})
	exported := exportedMetrics(t, peer, remote)

	for _, m := range listed {
		t.Run(m.name, func(t *testing.T) {
			if m.prefix {
				for name := range exported {
					if strings.HasPrefix(name, m.name) {
						return
					}
				}
				t.Fatalf("README lists %s*, but no metric served starts with it", m.name)
			}
			labels, ok := exported[m.name]
			if !ok {
				t.Fatalf("README lists %s, but it is not served", m.name)
			}
			if !slices.Equal(labels, m.labels) {
				t.Errorf("%s has the labels %v, README lists %v", m.name, labels, m.labels)
			}
		})
	}
	for name := range exported {
		if !slices.ContainsFunc(listed, func(m readmeMetric) bool {
			return m.name == name || (m.prefix && strings.HasPrefix(name, m.name))
		}) {
			t.Errorf("%s is served but README's metrics table does not list it", name)
		}
	}
}
