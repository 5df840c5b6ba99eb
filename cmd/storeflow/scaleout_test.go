package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/bench"
	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/internal/redistest"
)

// Three storeflow instances behind one real mosquitto ($share) and one real
// Redis take scripted visits from an outside client at QoS 1: every visit
// that lingers yields exactly one focus and exactly one coupon, and every
// instance took a share of the moves.
func TestThreeInstancesOneCouponPerFocus(t *testing.T) {
	r := redistest.Start(t)
	d := startDeployment(t, 3, "REDIS_URL="+r.URL())
	d.visits(t, 60, nil)
}

// The same while one instance is killed with SIGKILL mid-run and started
// again under its name (its persistent session kept by the broker): no
// coupon twice, and every focus gets its coupon after the restart. The kill
// comes as the moves that complete every shopper's dwell are on their way:
// focus events the dead instance held unacknowledged are delivered again to
// its next session, and a focus it applied to the shared state but never
// published is published again by the shopper's next move after
// refocusAfter (the same focus: same shopper, department and ts).
func TestInstanceKilledMidRunLosesNoCoupon(t *testing.T) {
	r := redistest.Start(t)
	d := startDeployment(t, 3, "REDIS_URL="+r.URL())
	d.visits(t, 60, func(step int) {
		if step == 14 { // the moves that complete every shopper's dwell are on their way
			d.instances[1].kill(t)
			d.instances[1].start(t)
		}
	})
}

// The visit test against a three-node Redis Cluster.
func TestThreeInstancesOnRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	d := startDeployment(t, 3, "REDIS_URL="+c.URL(), "REDIS_CLUSTER=true")
	d.visits(t, 60, nil)
}

// instance is one storeflow process of a scaled-out deployment: this test
// binary run as the storeflow command (TestMain), so it can be SIGKILLed.
type instance struct {
	name, httpAddr string
	env            []string
	cmd            *exec.Cmd
	out            *proctest.SyncBuffer
	exited         chan error
}

// start runs the instance and waits until it is ready.
func (in *instance) start(t *testing.T) {
	t.Helper()
	in.out = new(proctest.SyncBuffer)
	in.cmd = exec.Command(os.Args[0])
	in.cmd.Env = append(os.Environ(), append([]string{"STOREFLOW_RUN_MAIN=1", "HTTP_ADDR=" + in.httpAddr, "MQTT_NAME=" + in.name}, in.env...)...)
	in.cmd.Stdout, in.cmd.Stderr = in.out, in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.exited = make(chan error, 1)
	cmd, exited := in.cmd, in.exited
	go func() { exited <- cmd.Wait() }()
	waitReady(t, in.httpAddr, in.exited)
}

// kill ends the instance with SIGKILL, as a crash would.
func (in *instance) kill(t *testing.T) {
	t.Helper()
	_ = in.cmd.Process.Kill()
	<-in.exited
}

// metric sums the instance's series of name whose labels contain match.
func (in *instance) metric(t *testing.T, name, match string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + in.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("%s: %v", in.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return bench.Exposition(body).Sum(name, match)
}

// deployment is N storeflow instances sharing one mosquitto ($share) and one
// Redis: the scale-out set-up of the README.
type deployment struct {
	instances []*instance
	cfg       config.Config // the outside clients' settings
}

func startDeployment(t *testing.T, n int, redis ...string) *deployment {
	t.Helper()
	m := mosquittotest.NewWith(t, mosquittotest.Options{Conf: "allow_anonymous true"})
	_, port, _ := net.SplitHostPort(m.Addr())
	env := append([]string{"MQTT_HOST=127.0.0.1", "MQTT_PORT=" + port, "MQTT_SHARE_GROUP=storeflow", "DWELL_STATE=redis",
		"SIMULATOR_ENABLED=false", "MODEL_FILE=" + modeltest.File(t), "PREDICTION_THRESHOLD=0", "LOG_LEVEL=warn"}, redis...)
	d := &deployment{}
	for i := range n {
		in := &instance{name: fmt.Sprintf("storeflow-%d", i+1), httpAddr: proctest.FreeAddr(t), env: env}
		in.start(t)
		t.Cleanup(func() {
			_ = in.cmd.Process.Kill()
			if t.Failed() {
				t.Logf("%s's output:\n%s", in.name, in.out)
			}
		})
		d.instances = append(d.instances, in)
	}
	var err error
	if d.cfg, err = config.Load(map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": port}); err != nil {
		t.Fatal(err)
	}
	return d
}

// tally counts, per shopper, the focus events and coupons an outside client
// sees. A focus is counted once per identity (department and ts), a coupon
// once per coupon and ts: one delivered again (at least once) is the same
// focus, the same coupon.
type tally struct {
	mu             sync.Mutex
	focus, coupons map[string]map[string]bool // shopper → identities
}

// add counts identity for id in m; the caller holds mu.
func (tl *tally) add(m map[string]map[string]bool, id, identity string) {
	if m[id] == nil {
		m[id] = map[string]bool{}
	}
	m[id][identity] = true
}

func (d *deployment) watch(t *testing.T) *tally {
	t.Helper()
	c, err := broker.Dial(context.Background(), d.cfg.Broker.ToolClient("tally"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tl := &tally{focus: map[string]map[string]bool{}, coupons: map[string]map[string]bool{}}
	if err := c.Subscribe(d.cfg.Pipeline.FocusTopic, func(_ string, p []byte) {
		f, err := event.DecodeFocus(p)
		if err != nil {
			t.Errorf("focus %s: %v", p, err)
			return
		}
		tl.mu.Lock()
		tl.add(tl.focus, f.ID, f.Dep.String()+"@"+strconv.FormatInt(f.TS, 10))
		tl.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(d.cfg.Pipeline.PredictionTopic, func(_ string, p []byte) {
		var m struct {
			Customer struct{ ID string }
			Coupon   struct{ ID int }
			TS       int64
		}
		if err := json.Unmarshal(p, &m); err != nil {
			t.Errorf("coupon %s: %v", p, err)
			return
		}
		tl.mu.Lock()
		tl.add(tl.coupons, m.Customer.ID, strconv.Itoa(m.Coupon.ID)+"@"+strconv.FormatInt(m.TS, 10))
		tl.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	<-c.Ready()
	return tl
}

// counts is, per shopper, the focus and coupon identities seen so far.
func (tl *tally) counts() (focus, coupons map[string]int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	count := func(m map[string]map[string]bool) map[string]int {
		n := make(map[string]int, len(m))
		for id, ids := range m {
			n[id] = len(ids)
		}
		return n
	}
	return count(tl.focus), count(tl.coupons)
}

// visits plays n shoppers (catalog customers 1..n) at QoS 1, interleaved as
// real shoppers are: each enters, walks to Boys and stays there 15 s of event
// time (the dwell is 10 s), one step of every shopper after another; after
// each step, between(step) may disturb the deployment. Once every focus and
// coupon is in, the shoppers leave. Every shopper must have exactly one focus
// (identity) and one coupon, and every instance must have taken moves.
func (d *deployment) visits(t *testing.T, n int, between func(step int)) {
	t.Helper()
	tl := d.watch(t)
	pub, err := broker.Dial(context.Background(), d.cfg.Broker.ToolClient("sensors"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	<-pub.Ready()
	ctx := context.Background()
	ts := time.Now().Unix()
	send := func(topic string, payload []byte) {
		if err := pub.Publish(ctx, topic, payload); err != nil {
			t.Fatalf("publish %s %s: %v", topic, payload, err)
		}
	}
	id := func(i int) string { return strconv.Itoa(i + 1) }
	for i := range n {
		send(d.cfg.Simulator.EnterTopic, event.AppendPresence(nil, event.Presence{ID: id(i), TS: ts}))
	}
	path := [][2]int{{0, 0}, {1, 0}, {2, 0}, {3, 0}}
	for range 16 {
		path = append(path, [2]int{3, 1}) // Boys
	}
	for step, at := range path {
		for i := range n {
			send(d.cfg.Simulator.MoveTopic, event.AppendMove(nil, event.Move{ID: id(i), TS: ts + int64(step) + 1, X: at[0], Y: at[1]}))
		}
		if between != nil {
			between(step)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		focus, coupons := tl.counts()
		if len(coupons) >= n {
			break
		}
		if time.Now().After(deadline) {
			d.report(t)
			t.Fatalf("after 60 s: %d of %d shoppers focused, %d got a coupon", len(focus), n, len(coupons))
		}
		time.Sleep(10 * time.Millisecond) // a poll interval
	}
	for i := range n {
		send(d.cfg.Simulator.ExitTopic, event.AppendPresence(nil, event.Presence{ID: id(i), TS: ts + int64(len(path)) + 1}))
	}
	// Every exit taken in by some instance: what the moves started has
	// settled by then (each instance handles one shopper's events in order).
	harness.Until(t, 20*time.Second, fmt.Sprintf("%d exits taken in", n), func() bool {
		var exits float64
		for _, in := range d.instances {
			exits += in.metric(t, "storeflow_events_accepted_total", `kind="exit"`)
		}
		return exits >= float64(n)
	})
	focus, coupons := tl.counts()
	for i := range n {
		if focus[id(i)] != 1 || coupons[id(i)] != 1 {
			t.Errorf("shopper %s: %d focus events, %d coupons; want 1 and 1", id(i), focus[id(i)], coupons[id(i)])
		}
	}
	for _, in := range d.instances {
		if in.metric(t, "storeflow_events_accepted_total", `kind="move"`) == 0 {
			t.Errorf("%s took no moves: the share group did not share", in.name)
		}
	}
	d.report(t)
}

// report logs what each instance did: moves and focus events taken in, and
// what became of the focus events.
func (d *deployment) report(t *testing.T) {
	t.Helper()
	for _, in := range d.instances {
		outcomes := []string{}
		for _, o := range []string{"published", "duplicate", "below_threshold", "redis_error", "score_error", "context_error", "publish_error"} {
			if v := in.metric(t, "storeflow_focus_outcomes_total", `outcome="`+o+`"`); v > 0 {
				outcomes = append(outcomes, fmt.Sprintf("%s %v", o, v))
			}
		}
		t.Logf("%s (since its last start): %v moves, %v focus detected, %v focus taken in, %v dropped, outcomes %v", in.name,
			in.metric(t, "storeflow_events_accepted_total", `kind="move"`),
			in.metric(t, "storeflow_focus_detected_total", ""),
			in.metric(t, "storeflow_events_accepted_total", `kind="focus"`),
			in.metric(t, "storeflow_events_dropped_total", ""), outcomes)
	}
}
