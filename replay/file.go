// Package replay owns playing shoppers' visits back to a broker and
// recording them: the original demo's scenario files and storeflow's own
// recordings (JSON lines that Record writes), published with their event
// time rebased to now and their pace scaled.
package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/storeflow/storeflow/event"
)

// Topics says where each kind of scenario step is published. Enter, Move and
// Exit also say which topics of a recording carry sensor events.
type Topics struct {
	Enter, Move, Exit    string // sensor events: published by default
	Browsing, Prediction string // what storeflow computes itself: published only with All
}

// Options says what Load keeps.
type Options struct {
	Topics Topics
	// All keeps every step: BROWSING and PREDICTION steps of a scenario,
	// every topic of a recording. Without it only the sensor events (enter,
	// move, exit) are kept, and storeflow computes focus, browsing and
	// coupons from them as it does live.
	All bool
}

// Format names the two kinds of file Load reads.
const (
	FormatScenario  = "scenario"  // the original demo-scenario player's JSON list
	FormatRecording = "recording" // Record's JSON lines
)

// StepSeconds is the original player's step: one step a second (its
// STEP_LENGTH default).
const StepSeconds = 1

// File is one loaded file: the steps to publish, in order.
type File struct {
	Name   string
	Format string
	Steps  []Step
	Held   int     // steps left out: pauses, and without All what storeflow computes itself
	Bad    []error // steps that cannot be published, each naming file and step; left out
}

// Step is one message to publish.
type Step struct {
	File  string
	Where string        // "step 41" of a scenario (counted from 0, as the player does), "line 12" of a recording
	At    time.Duration // since the file's start, on the file's own clock
	Topic string

	raw     []byte   // a payload that is not a JSON object: published as is
	members []member // a JSON object's members, in order
	ts      int      // index of "ts" in members; -1: none
	tsRel   float64  // ts, in seconds since the file's first ts
	tsFloat bool     // the recorded ts had a fraction: keep one
}

type member struct {
	name string
	val  json.RawMessage
}

// Payload returns the step's payload with its ts at base (unix seconds) plus
// the step's offset from the file's first ts.
func (s Step) Payload(base int64) []byte {
	if s.members == nil {
		return s.raw
	}
	b := []byte{'{'}
	for i, m := range s.members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.name)
		b = append(b, ':')
		if i != s.ts {
			b = append(b, m.val...)
			continue
		}
		if s.tsFloat {
			b = strconv.AppendFloat(b, float64(base)+s.tsRel, 'f', -1, 64)
		} else {
			b = strconv.AppendInt(b, base+int64(s.tsRel), 10)
		}
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// Load reads one file: a scenario (a JSON list of steps) or a recording (one
// JSON object a line), told apart by the first character. An error means the
// file is neither (unreadable, not JSON); a step that cannot be published is
// left out and listed in Bad.
func Load(name string, r io.Reader, opt Options) (*File, error) {
	br := bufio.NewReader(r)
	for {
		c, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: empty file: want a scenario (a JSON list) or a recording (JSON lines)", name)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			continue
		}
		_ = br.UnreadByte()
		switch c {
		case '[':
			return loadScenario(name, br, opt)
		case '{':
			return loadRecording(name, br, opt)
		}
		return nil, fmt.Errorf("%s: starts with %q: want a scenario (a JSON list) or a recording (JSON lines)", name, c)
	}
}

// scenarioStep is one element of a scenario: {"type": "MOVE", "message": {…}};
// {"type": null} is a pause.
type scenarioStep struct {
	Type    *string         `json:"type"`
	Message json.RawMessage `json:"message"`
}

func loadScenario(name string, r io.Reader, opt Options) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var steps []json.RawMessage
	if err := json.Unmarshal(data, &steps); err != nil {
		return nil, fmt.Errorf("%s: %s", name, jsonError(data, err))
	}
	f := &File{Name: name, Format: FormatScenario}
	for i, raw := range steps {
		where := "step " + strconv.Itoa(i)
		bad := func(format string, a ...any) {
			f.Bad = append(f.Bad, fmt.Errorf("%s: %s: %s", name, where, fmt.Sprintf(format, a...)))
		}
		var st scenarioStep
		if err := json.Unmarshal(raw, &st); err != nil {
			bad("want {\"type\": …, \"message\": {…}}: %v", err)
			continue
		}
		if st.Type == nil {
			f.Held++ // a pause: the clock runs on
			continue
		}
		var topic string
		var check func([]byte) error
		sensor := true
		switch *st.Type {
		case "ENTER":
			topic, check = opt.Topics.Enter, presence
		case "EXIT":
			topic, check = opt.Topics.Exit, presence
		case "MOVE":
			topic, check = opt.Topics.Move, move
		case "BROWSING":
			topic, check, sensor = opt.Topics.Browsing, presence, false
		case "PREDICTION":
			// The coupon message: its id is the customer's, inside.
			topic, check, sensor = opt.Topics.Prediction, nil, false
		default:
			bad("unknown type %q (want ENTER, MOVE, EXIT, BROWSING, PREDICTION or null)", *st.Type)
			continue
		}
		if !sensor && !opt.All {
			f.Held++
			continue
		}
		s := Step{File: name, Where: where, At: time.Duration(i*StepSeconds) * time.Second, Topic: topic, tsRel: float64(i * StepSeconds)}
		if err := s.setObject(st.Message); err != nil {
			bad("message: %v", err)
			continue
		}
		if check != nil {
			if err := s.idAsString(); err != nil {
				bad("message: %v", err)
				continue
			}
		}
		s.setTS()
		if check != nil {
			if err := check(s.Payload(time.Now().Unix())); err != nil {
				bad("message: %v", err)
				continue
			}
		}
		f.Steps = append(f.Steps, s)
	}
	return f, nil
}

func presence(b []byte) error { _, err := event.DecodePresence(b); return err }
func move(b []byte) error     { _, err := event.DecodeMove(b); return err }

// setObject keeps the members of a JSON object, in order.
func (s *Step) setObject(raw json.RawMessage) error {
	if event.Kind(raw) != event.KindObject {
		return fmt.Errorf("want a JSON object, got %s", event.Kind(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	s.members, s.ts = []member{}, -1
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var val bytes.Buffer // one line: a recording's line, a payload without the file's indentation
		if err := json.Compact(&val, raw); err != nil {
			return err
		}
		name := tok.(string) // an object's keys are strings
		for _, m := range s.members {
			if m.name == name {
				return fmt.Errorf("field %q given more than once", name)
			}
		}
		if name == "ts" {
			s.ts = len(s.members)
		}
		s.members = append(s.members, member{name, val.Bytes()})
	}
	return nil
}

// idAsString writes the message's id as a string, as storeflow publishes
// ids; event's rules say which ids are ids (an integer or a string).
func (s *Step) idAsString() error {
	for i, m := range s.members {
		if m.name != "id" {
			continue
		}
		p, err := event.DecodePresence([]byte(`{"id":` + string(m.val) + `,"ts":1}`))
		if err != nil {
			return err
		}
		s.members[i].val = appendJSONString(nil, p.ID)
		return nil
	}
	return &event.Error{Reason: event.ReasonMissingField, Field: "id", Detail: "missing"}
}

// setTS gives a scenario message the ts the player set at publish time:
// right after the id, or last (where the player put it) in a message
// without one.
func (s *Step) setTS() {
	if s.ts >= 0 {
		return
	}
	at := len(s.members)
	for i, m := range s.members {
		if m.name == "id" {
			at = i + 1
		}
	}
	s.members = append(s.members[:at], append([]member{{name: "ts"}}, s.members[at:]...)...)
	s.ts = at
}

// Line is one line of a recording: a message as Record saw it.
type Line struct {
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"` // a JSON object or list as sent; anything else as a string of its bytes
	Time    time.Time       `json:"time"`    // when Record received it
}

// maxLine bounds one line of a recording: far more than any MQTT payload
// storeflow handles (BROKER_MAX_PACKET_SIZE at most 16 KiB by default).
const maxLine = 1 << 20

func loadRecording(name string, r io.Reader, opt Options) (*File, error) {
	f := &File{Name: name, Format: FormatRecording}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	sensor := map[string]bool{opt.Topics.Enter: true, opt.Topics.Move: true, opt.Topics.Exit: true}
	var first time.Time
	var firstTS float64
	haveTS := false
	for n := 1; sc.Scan(); n++ {
		where := "line " + strconv.Itoa(n)
		bad := func(format string, a ...any) {
			f.Bad = append(f.Bad, fmt.Errorf("%s: %s: %s", name, where, fmt.Sprintf(format, a...)))
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			bad("want {\"topic\": …, \"payload\": …, \"time\": …}: %s", jsonError(sc.Bytes(), err))
			continue
		}
		switch {
		case l.Topic == "":
			bad("topic missing")
			continue
		case l.Time.IsZero():
			bad("time missing")
			continue
		case l.Payload == nil:
			bad("payload missing")
			continue
		}
		if first.IsZero() {
			first = l.Time
		}
		if l.Time.Before(first) {
			bad("time %s is before the first line's %s", l.Time.Format(time.RFC3339Nano), first.Format(time.RFC3339Nano))
			continue
		}
		if !sensor[l.Topic] && !opt.All {
			f.Held++
			continue
		}
		s := Step{File: name, Where: where, At: l.Time.Sub(first), Topic: l.Topic, ts: -1}
		switch event.Kind(l.Payload) {
		case event.KindString:
			var text string
			_ = json.Unmarshal(l.Payload, &text) // checked by the Unmarshal of the line
			s.raw = []byte(text)
		case event.KindObject:
			if err := s.setObject(l.Payload); err != nil {
				bad("payload: %v", err)
				continue
			}
		default:
			s.raw = l.Payload
		}
		if s.ts >= 0 {
			ts, err := strconv.ParseFloat(string(s.members[s.ts].val), 64)
			if err != nil {
				s.ts = -1 // not a number: published as recorded
			} else {
				if !haveTS {
					firstTS, haveTS = ts, true
				}
				s.tsRel = ts - firstTS
				s.tsFloat = ts != float64(int64(ts))
			}
		}
		f.Steps = append(f.Steps, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// jsonError says where in data a JSON error is, by line and column.
func jsonError(data []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return err.Error()
	}
	off := int(se.Offset)
	if off > len(data) {
		off = len(data)
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n') - 1 // the offset is past the bad byte
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}
