package replay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTopics = Topics{Enter: "customer/enter", Move: "customer/move", Exit: "customer/exit",
	Browsing: "customer/browsing", Prediction: "customer/prediction"}

func loadString(t *testing.T, name, data string, all bool) *File {
	t.Helper()
	f, err := Load(name, strings.NewReader(data), Options{Topics: testTopics, All: all})
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return f
}

func loadFixture(t *testing.T, name string, all bool) *File {
	t.Helper()
	path := filepath.Join("..", "testdata", "original", "scenarios", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return loadString(t, path, string(data), all)
}

// The original scenario files load whole: every step is either published
// or, a pause or what storeflow computes itself, left out; none is bad.
func TestLoadOriginalScenarios(t *testing.T) {
	for _, tt := range []struct {
		file            string
		all             bool
		steps, held     int
		firstAt         time.Duration
		firstTopic      string
		first, lastMove string // payloads at base 1000
	}{
		{"scenario_4.json", false, 108, 1, 0, "customer/enter",
			`{"id":"4","ts":1000,"x":937,"y":50}`, `{"id":"4","ts":1107,"x":1073.0229191797348,"y":215.1263475864075}`},
		{"scenario_4.json", true, 109, 0, 0, "customer/enter", `{"id":"4","ts":1000,"x":937,"y":50}`, ""},
		{"scenario_18.json", false, 71, 10, 8 * time.Second, "customer/enter", `{"id":"18","ts":1008,"x":937,"y":50}`, ""},
		{"scenario_18.json", true, 73, 8, 8 * time.Second, "customer/enter", `{"id":"18","ts":1008,"x":937,"y":50}`, ""},
		{"scenario_32.json", false, 102, 5, 5 * time.Second, "customer/enter", `{"id":"32","ts":1005,"x":937,"y":50}`, ""},
	} {
		f := loadFixture(t, tt.file, tt.all)
		if len(f.Bad) > 0 || f.Format != FormatScenario || len(f.Steps) != tt.steps || f.Held != tt.held {
			t.Fatalf("%s all=%v: format %s, %d steps, %d held, bad %v; want scenario, %d steps, %d held, none bad",
				tt.file, tt.all, f.Format, len(f.Steps), f.Held, f.Bad, tt.steps, tt.held)
		}
		s := f.Steps[0]
		if s.At != tt.firstAt || s.Topic != tt.firstTopic || string(s.Payload(1000)) != tt.first {
			t.Errorf("%s: first step at %s on %s: %s; want at %s on %s: %s", tt.file, s.At, s.Topic, s.Payload(1000), tt.firstAt, tt.firstTopic, tt.first)
		}
		if tt.lastMove != "" {
			m := f.Steps[len(f.Steps)-2]
			if m.Topic != "customer/move" || string(m.Payload(1000)) != tt.lastMove {
				t.Errorf("%s: last move on %s: %s; want %s", tt.file, m.Topic, m.Payload(1000), tt.lastMove)
			}
		}
	}
	// With --all the original's own decisions go out on their topics, ts set
	// as the original player set it.
	f := loadFixture(t, "scenario_18.json", true)
	var browsing, prediction string
	for _, s := range f.Steps {
		switch s.Topic {
		case "customer/browsing":
			browsing = string(s.Payload(1000))
		case "customer/prediction":
			prediction = string(s.Payload(1000))
		}
	}
	if browsing != `{"id":"18","ts":1038,"x":1040.3088057901086,"y":966.9820674338519}` {
		t.Errorf("browsing step = %s", browsing)
	}
	if !strings.HasPrefix(prediction, `{"customer":{"id":"18"},"coupon":{"id":"22",`) || !strings.HasSuffix(prediction, `,"ts":1026}`) {
		t.Errorf("prediction step = %s", prediction)
	}
}

// Bad steps are left out with an error naming the file, the step and the
// field; the rest of the file plays.
func TestLoadScenarioBadSteps(t *testing.T) {
	data := `[
 {"type": "ENTER", "message": {"id": 7, "x": 1, "y": 2}},
 {"type": "WALK", "message": {"id": 7}},
 {"type": "MOVE", "message": {"x": 1, "y": 2}},
 {"type": "MOVE", "message": {"id": 7.5, "x": 1, "y": 2}},
 {"type": "MOVE", "message": {"id": 7, "x": 1}},
 {"type": "MOVE", "message": [7, 1, 2]},
 {"type": "MOVE", "message": {"id": 7, "x": 1, "y": 2, "x": 3}},
 "MOVE",
 {"type": null},
 {"type": "EXIT", "message": {"id": "7"}}
]`
	f := loadString(t, "bad.json", data, false)
	want := []string{
		`bad.json: step 1: unknown type "WALK"`,
		`bad.json: step 2: message: event: field "id": missing`,
		`bad.json: step 3: message: event: field "id"`,
		`bad.json: step 4: message: event: field "y": missing`,
		`bad.json: step 5: message: want a JSON object, got a list`,
		`bad.json: step 6: message: field "x" given more than once`,
		`bad.json: step 7: want {"type"`,
	}
	if len(f.Bad) != len(want) {
		t.Fatalf("bad = %v, want %d", f.Bad, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(f.Bad[i].Error(), w) {
			t.Errorf("bad[%d] = %v, want it to start with %s", i, f.Bad[i], w)
		}
	}
	if len(f.Steps) != 2 || f.Held != 1 || string(f.Steps[1].Payload(100)) != `{"id":"7","ts":109}` {
		t.Fatalf("steps %d, held %d, last %s; want 2 steps, 1 held, the exit at ts 109", len(f.Steps), f.Held, f.Steps[len(f.Steps)-1].Payload(100))
	}
}

// A file that is neither a scenario nor a recording stops the replay before
// anything is published, saying where.
func TestLoadRefusesWhatIsNoScenario(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"empty", " \n", "empty: empty file"},
		{"text", "hello", `text: starts with 'h'`},
		{"broken", "[\n {\"type\": \"MOVE\",\n  \"message\": {\"id\": 7,}}\n]", "broken: line 3, column 23: invalid character '}'"},
		{"number", "42", `number: starts with '4'`},
	} {
		_, err := Load(tt.name, strings.NewReader(tt.data), Options{Topics: testTopics})
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: Load error %v, want it to start with %s", tt.name, err, tt.want)
		}
	}
}

// A recording plays back its messages at their recorded distances, ts
// rebased; without --all only the sensor topics.
func TestLoadRecording(t *testing.T) {
	data := `{"topic":"customer/enter","payload":{"id":"7","ts":500},"time":"2026-01-02T10:00:00Z"}
{"topic":"customer/focus","payload":{"id":"7","ts":511,"dep":"Boys"},"time":"2026-01-02T10:00:00.5Z"}

{"topic":"customer/move","payload":{"id":"7","ts":512.25,"x":3,"y":1},"time":"2026-01-02T10:00:01.5Z"}
{"topic":"customer/move","payload":"not json","time":"2026-01-02T10:00:02Z"}
{"topic":"customer/move","payload":42,"time":"2026-01-02T10:00:02Z"}
{"topic":"customer/exit","payload":{"id":"7","ts":"late"},"time":"2026-01-02T10:00:03Z"}
{"topic":"customer/exit","payload":{"id":"7"},"time":"2026-01-02T09:00:00Z"}
{"topic":"customer/exit","payload":{"id":"7"}}
{"payload":{"id":"7"},"time":"2026-01-02T10:00:03Z"}
{"topic":"customer/exit","time":"2026-01-02T10:00:03Z"}
not a line
`
	f := loadString(t, "rec.jsonl", data, false)
	type got struct {
		at             time.Duration
		topic, payload string
	}
	want := []got{
		{0, "customer/enter", `{"id":"7","ts":2000}`},
		{1500 * time.Millisecond, "customer/move", `{"id":"7","ts":2012.25,"x":3,"y":1}`},
		{2 * time.Second, "customer/move", `not json`},
		{2 * time.Second, "customer/move", `42`},
		{3 * time.Second, "customer/exit", `{"id":"7","ts":"late"}`},
	}
	if f.Format != FormatRecording || len(f.Steps) != len(want) || f.Held != 1 {
		t.Fatalf("format %s, %d steps, %d held; want recording, %d steps, 1 held (the focus)", f.Format, len(f.Steps), f.Held, len(want))
	}
	for i, w := range want {
		s := f.Steps[i]
		if g := (got{s.At, s.Topic, string(s.Payload(2000))}); g != w {
			t.Errorf("step %d = %+v, want %+v", i, g, w)
		}
	}
	wantBad := []string{"rec.jsonl: line 8: time 2026-01-02T09:00:00Z is before", "rec.jsonl: line 9: time missing",
		"rec.jsonl: line 10: topic missing", "rec.jsonl: line 11: payload missing", "rec.jsonl: line 12: want {"}
	if len(f.Bad) != len(wantBad) {
		t.Fatalf("bad = %v, want %d", f.Bad, len(wantBad))
	}
	for i, w := range wantBad {
		if !strings.HasPrefix(f.Bad[i].Error(), w) {
			t.Errorf("bad[%d] = %v, want it to start with %s", i, f.Bad[i], w)
		}
	}
	if all := loadString(t, "rec.jsonl", data, true); len(all.Steps) != len(want)+1 || string(all.Steps[1].Payload(2000)) != `{"id":"7","ts":2011,"dep":"Boys"}` {
		t.Errorf("with all: %d steps, the focus %s", len(all.Steps), all.Steps[1].Payload(2000))
	}
}
