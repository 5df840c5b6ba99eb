package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/store"
)

// visitor publishes one shopper's events on a test bus, one second apart.
type visitor struct {
	b  *bus
	id string
	ts int64
}

func (v *visitor) send(topic, payload string) {
	_ = v.b.Publish(context.Background(), topic, []byte(payload))
}

func (v *visitor) enter() { v.ts++; v.send("enter", fmt.Sprintf(`{"id":%q,"ts":%d}`, v.id, v.ts)) }
func (v *visitor) exit()  { v.ts++; v.send("exit", fmt.Sprintf(`{"id":%q,"ts":%d}`, v.id, v.ts)) }

func (v *visitor) move(x, y int) {
	v.ts++
	v.send("move", fmt.Sprintf(`{"id":%q,"ts":%d,"x":%d,"y":%d}`, v.id, v.ts, x, y))
}

// wander walks n moves up and down the front aisle of the 6×10 grid (row 0,
// no department), each to another position.
func (v *visitor) wander(n int) {
	for i := range n {
		x := i % 10
		if x > 5 {
			x = 10 - x
		}
		v.move(x, 0)
	}
}

// handled waits until the dwell workers have handled everything published so
// far: a move older than the shopper's last is counted as out of order once
// its worker reaches it.
func (v *visitor) handled(t *testing.T, p *Pipeline) {
	t.Helper()
	want := testutil.ToFloat64(p.m.outOfOrder) + 1
	v.send("move", fmt.Sprintf(`{"id":%q,"ts":1,"x":0,"y":0}`, v.id))
	waitFor(t, "the marker move handled", func() bool { return testutil.ToFloat64(p.m.outOfOrder) >= want })
}

// published drains the bus's record and returns what went to topic.
func published(b *bus, topic string) []string {
	var out []string
	for {
		select {
		case m := <-b.out:
			if payload, ok := strings.CutPrefix(m, topic+" "); ok {
				out = append(out, payload)
			}
		default:
			return out
		}
	}
}

// A shopper who keeps walking the aisle is browsing at the 21st move (with
// testConfig's 20 s and 20 moves to another position: the original decision
// service's 21 moves): one event in the original's shape, no "dep" in an
// aisle. Walking on raises no
// second one; an exit ends the episode and the next visit has its own.
func TestWanderingShopperIsBrowsing(t *testing.T) {
	b := newBus()
	p := start(t, testConfig(), testCatalog(t), b, prometheus.NewRegistry(), nil)
	v := &visitor{b: b, id: "7", ts: 1795000000}

	v.enter()
	v.wander(20)
	v.handled(t, p)
	if got := published(b, "browsing"); len(got) != 0 {
		t.Fatalf("browsing after 20 moves (19 s): %v, want none yet", got)
	}
	v.wander(1)
	v.handled(t, p)
	want := fmt.Sprintf(`{"id":"7","ts":%d,"x":0,"y":0}`, v.ts)
	if got := published(b, "browsing"); !slices.Equal(got, []string{want}) {
		t.Fatalf("browsing events %v, want [%s]", got, want)
	}

	v.wander(60)
	v.handled(t, p)
	if got := published(b, "browsing"); len(got) != 0 {
		t.Fatalf("a minute more of wandering published %v, want nothing: one event per episode", got)
	}
	if got := testutil.ToFloat64(p.m.browsing); got != 1 {
		t.Fatalf("storeflow_browsing_detected_total = %v, want 1", got)
	}

	v.exit()
	v.enter()
	v.wander(21)
	v.handled(t, p)
	if got := published(b, "browsing"); len(got) != 1 || !strings.Contains(got[0], fmt.Sprintf(`"ts":%d`, v.ts)) {
		t.Fatalf("next visit: browsing events %v, want one at ts %d", got, v.ts)
	}
	if got := testutil.ToFloat64(p.m.browsing); got != 2 {
		t.Fatalf("storeflow_browsing_detected_total = %v, want 2", got)
	}
}

// A shopper who lingers in Men, moving from shelf to shelf, focuses and is
// not browsing however long it stays; walking away afterwards starts a new
// episode, which names the department the shopper is in when it completes.
func TestLingeringShopperIsNotBrowsing(t *testing.T) {
	b := newBus()
	p := start(t, testConfig(), testCatalog(t), b, prometheus.NewRegistry(), nil)
	v := &visitor{b: b, id: "8", ts: 1795000000}

	v.enter()
	v.move(0, 0)
	for i := range 90 { // Men is x 0–1, y 6–8 on the 6×10 grid
		v.move(i%2, 6+i%3)
	}
	v.handled(t, p)
	if got := published(b, "browsing"); len(got) != 0 {
		t.Fatalf("lingering in Men published %v, want no browsing", got)
	}
	if got := testutil.ToFloat64(p.m.focus); got != 1 {
		t.Fatalf("storeflow_focus_detected_total = %v, want 1", got)
	}

	// Out of Men along the cross aisle (row 5), through Sports (x 3–5,
	// y 6–8) for 9 s, under the dwell, back to the aisle and into Sports
	// again: the 20th move after the last one in Men, 20 s on.
	last := v.ts
	for x := range 6 {
		v.move(x, 5)
	}
	for i := range 9 {
		v.move(3+i%3, 6+i%3)
	}
	for x := 5; x >= 2; x-- {
		v.move(x, 5)
	}
	v.handled(t, p)
	if got := published(b, "browsing"); len(got) != 0 {
		t.Fatalf("browsing %v %d s after leaving Men, want none before 20 s", got, v.ts-last)
	}
	v.move(3, 6)
	v.handled(t, p)
	want := fmt.Sprintf(`{"id":"8","ts":%d,"dep":"Sports","x":3,"y":6}`, last+20)
	if got := published(b, "browsing"); !slices.Equal(got, []string{want}) {
		t.Fatalf("browsing events %v, want [%s]", got, want)
	}
	if got := testutil.ToFloat64(p.m.focus); got != 1 {
		t.Fatalf("storeflow_focus_detected_total = %v, want 1: the walk through Sports must not focus", got)
	}
}

// The original demo's recorded scenarios, their moves one a second on the
// original plan, through the default dwell and browsing rules: the shopper of
// scenario_18 (the one recorded with a BROWSING step) focuses in Women and
// later wanders, and is browsing once; scenario_32's long walk after its
// focus in Boys is browsing once; scenario_4 focuses twice and never
// wanders long enough.
func TestOriginalScenarios(t *testing.T) {
	cfg := defaultConfig(t)
	rule := DwellRule{Dwell: cfg.FocusDwell, Gap: cfg.FocusGap, Cooldown: cfg.FocusCooldown}
	browsing := BrowsingRule{After: cfg.BrowsingAfter, Moves: cfg.BrowsingMoves}
	plan := store.OriginalPlan()
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"scenario_18.json", []string{"24 focus Women", "55 browsing"}},
		{"scenario_32.json", []string{"18 focus Girls", "29 focus Boys", "70 browsing"}},
		{"scenario_4.json", []string{"40 focus Men", "76 focus Sports"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "testdata", "original", "scenarios", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var steps []struct {
				Type    *string
				Message struct{ X, Y float64 }
			}
			if err := json.Unmarshal(raw, &steps); err != nil {
				t.Fatal(err)
			}
			var s shopper
			var got []string
			const start = 1765069200 // the player sets ts at publish time: one step a second
			for i, st := range steps {
				if st.Type == nil || *st.Type != "MOVE" {
					continue
				}
				x, y := int(math.Round(st.Message.X)), int(math.Round(st.Message.Y))
				switch s.move(&rule, &browsing, start+int64(i), x, y, plan.DepartmentAt(x, y)) {
				case moveFocus:
					got = append(got, fmt.Sprintf("%d focus %s", i, s.dep))
				case moveBrowsing:
					got = append(got, fmt.Sprintf("%d browsing", i))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("steps %q, want %q", got, tc.want)
			}
		})
	}
}

// defaultConfig is the pipeline's Config with every default of its env tags.
func defaultConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	return cfg
}
