package liveview

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPagesServed(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	for _, c := range []struct {
		path, contentType, has string
		status                 int
	}{
		{"/", "text/html", `src="/assets/store.js"`, 200},
		{"/phone/127", "text/html", `src="/assets/phone.js"`, 200},
		{"/assets/store.js", "text/javascript", "follow(", 200},
		{"/assets/live.js", "text/javascript", "EventSource", 200},
		{"/assets/style.css", "text/css", ".shopper", 200},
		{"/phone/" + strings.Repeat("7", 65), "text/plain", "longer than 64 bytes", 400},
		{"/assets/nothing.js", "text/plain", "404", 404},
		{"/nothing", "text/plain", "404", 404},
	} {
		resp, body := get(t, r.srv.URL+c.path)
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.contentType) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %d %q, %.60q; want %d %s with %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.contentType, c.has)
		}
		if c.status == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, resp.Header.Get("Content-Security-Policy"))
		}
	}
}

// The pages are self-contained: every asset they name is embedded, and
// nothing is fetched from another host.
func TestPagesSelfContained(t *testing.T) {
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"|from '\./([^']+)'`)
	outside := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(web, "web", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(web, path)
		if err != nil {
			return err
		}
		for _, m := range refs.FindAllStringSubmatch(string(b), -1) {
			name := strings.TrimPrefix(m[1], "/assets/") + m[2]
			if _, err := fs.Stat(web, "web/"+name); err != nil {
				t.Errorf("%s names %s, not embedded", path, name)
			}
		}
		for _, u := range outside.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" { // the SVG namespace, a name, not fetched
				t.Errorf("%s refers to %s: assets must be embedded", path, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHelpedClosesTheAlertForEveryViewer(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	ch, _ := stream(t, r.srv.URL, "")
	r.pub(t, topics.Browsing, `{"id":"2","ts":120,"dep":"Men","x":1,"y":7}`)
	r.pub(t, topics.Browsing, `{"id":"3","ts":121,"x":0,"y":0}`)
	next(t, ch)
	next(t, ch)
	post := func(id string, header map[string]string) int {
		req, _ := http.NewRequest("POST", r.srv.URL+"/api/alerts/"+id+"/helped", nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("2", map[string]string{"Origin": r.srv.URL, "Sec-Fetch-Site": "same-origin"}); got != http.StatusNoContent {
		t.Fatalf("helped from the page: %d, want 204", got)
	}
	if e := next(t, ch); e != (sse{"3", "helped", `{"id":"2"}`}) {
		t.Errorf("event %+v, want helped for 2", e)
	}
	if got := post("2", nil); got != http.StatusNotFound {
		t.Errorf("helped again: %d, want 404", got)
	}
	if got := post("3", map[string]string{"Origin": "http://shop.example", "Sec-Fetch-Site": "cross-site"}); got != http.StatusForbidden {
		t.Errorf("helped from another site: %d, want 403", got)
	}
	if got := post("3", map[string]string{"Origin": "http://shop.example"}); got != http.StatusForbidden {
		t.Errorf("helped from another origin: %d, want 403", got)
	}
	if got := post(strings.Repeat("3", 65), nil); got != http.StatusBadRequest {
		t.Errorf("helped for a bad id: %d, want 400", got)
	}
	if s := r.view.Snapshot(""); len(s.Alerts) != 1 || s.Alerts[0].ID != "3" {
		t.Errorf("alerts %+v, want 3's only", s.Alerts)
	}
}

// A phone follows its shopper only: their events on the stream, and in the
// snapshot their coupons, even when the store's last coupons are others'.
func TestPhoneFollowsOnlyItsShopper(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	ch, _ := streamOf(t, r.srv.URL+"/api/events?customer=1", "")
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`)
	r.pub(t, topics.Enter, `{"id":"2","ts":100}`)
	r.pub(t, topics.Move, `{"id":"2","ts":101,"x":0,"y":0}`)
	r.pub(t, topics.Prediction, coupon) // for 1
	for i := range recentCoupons + 5 {
		r.pub(t, topics.Prediction, strings.Replace(coupon, `"id": "1"`, fmt.Sprintf(`"id": "%d"`, 100+i), 1))
	}
	r.pub(t, topics.Move, `{"id":"1","ts":102,"x":0,"y":0}`)
	want := []sse{{"1", "enter", `{"id":"1","ts":100}`}, {"4", "coupon", ""}, {"30", "move", `{"id":"1","ts":102,"x":0,"y":0}`}}
	for _, w := range want {
		e := next(t, ch)
		if w.data == "" {
			e.data = ""
		}
		if e != w {
			t.Fatalf("event %+v, want %+v", e, w)
		}
	}
	_, body := get(t, r.srv.URL+"/api/store?customer=1")
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Shoppers) != 1 || s.Shoppers[0].ID != "1" || len(s.Coupons) != 1 || !strings.Contains(string(s.Coupons[0]), `"customer":{"id":"1"}`) {
		t.Errorf("snapshot for 1: shoppers %+v, coupons %d", s.Shoppers, len(s.Coupons))
	}
	if resp, _ := get(t, r.srv.URL+"/api/events?customer="); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("empty customer: %d, want 400", resp.StatusCode)
	}
}

func TestFiguresPushed(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	r.view.SetFigures(func(f *Figures) {
		f.Rejected = 5
		f.Acceptance = &Acceptance{Received: 10, WouldUse: 3, ExpectedRate: 0.3, RandomRate: 0.1}
		f.Experiment = []ExperimentArm{{Arm: "a", Focus: 9, Coupons: 8, OffersUsed: 2, Rate: 0.25, Low: 0.07, High: 0.59}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.view.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ch, _ := stream(t, r.srv.URL, "")
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`)
	next(t, ch)
	e := next(t, ch) // within figuresEvery
	var f Figures
	if err := json.Unmarshal([]byte(e.data), &f); err != nil || e.event != "figures" || e.id != "" {
		t.Fatalf("event %+v (%v), want figures without id", e, err)
	}
	if f.Shoppers != 1 || f.Rejected != 5 || f.Acceptance == nil || f.Acceptance.WouldUse != 3 || len(f.Experiment) != 1 || f.Experiment[0].OffersUsed != 2 {
		t.Errorf("figures %+v", f)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	r := newRig(t, Config{Enabled: true, MaxViewers: 4})
	ch, _ := stream(t, r.srv.URL, "")
	r.pub(t, topics.Enter, `{"id":"1","ts":100}`)
	next(t, ch)
	r.view.Close()
	select {
	case e, ok := <-ch:
		if ok {
			t.Fatalf("event %+v after Close", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open 10s after Close")
	}
}
