package e2e

import (
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The README's TESTING_NO_MQTT example, run as written: the settings of its
// start line, then its curl lines in order, with $now the time of the run.
// The customer and department it names get a coupon, published to the mock
// broker. (Its former customer 127 in Boys got below_threshold, in every
// department.)
func TestReadmeNoMQTTExample(t *testing.T) {
	start, requests := readmeNoMQTTExample(t)
	env := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "MODEL_FILE": ""} // the model trained at start, as the example's
	for k, v := range start {
		env[k] = v
	}
	sys := startSystem(t, env)
	for _, r := range requests {
		status, b := sys.post(t, r.path, r.body)
		t.Logf("POST %s %s = %d %s", r.path, r.body, status, b)
		switch r.path {
		case "/mock_entry":
			if status != http.StatusAccepted {
				t.Fatalf("POST %s %s = %d %s, want 202", r.path, r.body, status, b)
			}
		case "/mock_focus":
			if status != http.StatusOK || !strings.HasPrefix(string(b), `{"outcome":"published","prediction":{`) {
				t.Fatalf("POST %s %s = %d %s, want 200 and a coupon published", r.path, r.body, status, b)
			}
		default:
			t.Fatalf("the example posts to %s; the test knows /mock_entry and /mock_focus", r.path)
		}
	}
	if n := sys.metric(t, "storeflow_mqtt_mock_published_total"); n != 1 {
		t.Errorf("mock publishes = %v, want the one coupon", n)
	}
	if n := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=published"); n != 1 {
		t.Errorf("published outcomes = %v, want 1", n)
	}
}

type readmeRequest struct{ path, body string }

// readmeNoMQTTExample reads the TESTING_NO_MQTT example from README.md: the
// variables of its start line and its requests. A line it does not
// understand fails the test, so the example cannot drift from what is run.
func readmeNoMQTTExample(t *testing.T) (map[string]string, []readmeRequest) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "- `TESTING_NO_MQTT=true` (seed 000)")
	j := strings.Index(text, "- `TESTING_MOCK_MQTT=true`")
	if i < 0 || j < i {
		t.Fatal("README.md: no TESTING_NO_MQTT example before the TESTING_MOCK_MQTT one")
	}
	var (
		startLine = regexp.MustCompile(`^((?:[A-Z_]+=\S+ )+)go run \./cmd/storeflow$`)
		curl      = regexp.MustCompile(`^curl -s 127\.0\.0\.1:8000(/\S+) -H 'Content-Type: application/json' -d '(.*)'$`)
		now       = strconv.FormatInt(time.Now().Unix(), 10)
		env       map[string]string
		reqs      []readmeRequest
		inCode    bool
	)
	for _, line := range strings.Split(text[i:j], "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "```"):
			inCode = line == "```sh"
		case !inCode || line == "":
		case line == "now=$(date +%s)":
		case startLine.MatchString(line):
			env = map[string]string{}
			for _, kv := range strings.Fields(startLine.FindStringSubmatch(line)[1]) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case curl.MatchString(line):
			m := curl.FindStringSubmatch(line)
			reqs = append(reqs, readmeRequest{m[1], strings.ReplaceAll(m[2], "'$now'", now)})
		default:
			t.Fatalf("README.md's TESTING_NO_MQTT example: line %q: the test does not know how to run it", line)
		}
	}
	if env["TESTING_NO_MQTT"] != "true" || len(reqs) == 0 {
		t.Fatalf("README.md's TESTING_NO_MQTT example: start settings %v and %d requests, want TESTING_NO_MQTT=true and requests", env, len(reqs))
	}
	return env, reqs
}
