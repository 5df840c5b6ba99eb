package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser test's screenshots to docs/img for the README")

// tab is one headless Chromium tab, closed with its browser when the test
// ends.
type tab struct {
	t   testing.TB
	ctx context.Context
}

// openTab starts a headless Chromium with a viewport of width × height and
// returns its first tab.
func openTab(t testing.TB, width, height int) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(proctest.FindTool(t, "chromium is not installed: the browser tests need it (apt-get install -y chromium)", "chromium", "/usr/bin/chromium")),
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	tb := &tab{t: t, ctx: ctx}
	// The first action starts the browser; it must run on the tab's own
	// context (a timeout on it would end the browser), so the start is
	// bounded from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))) }()
	harness.Done(t, 30*time.Second, "chromium started", started)
	return tb
}

// do runs actions on the tab within 20 s.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its JSON
// value into out.
func (tb *tab) eval(expr string, out any) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		tb.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		tb.t.Fatalf("browser: evaluate %s: %s: %v", expr, raw, err)
	}
}

// open navigates to url and waits until the page says it is live: the
// stream is open and the snapshot applied.
func (tb *tab) open(url string) {
	tb.t.Helper()
	tb.do("open "+url, chromedp.Navigate(url))
	harness.Until(tb.t, 20*time.Second, url+": #status[data-state=live]", func() bool {
		var live bool
		tb.eval(`document.querySelector('#status[data-state="live"]') !== null`, &live)
		return live
	})
}

// pageView is window.storeflowView, the page's own count of what it applied.
type pageView struct {
	Events    float64 `json:"events"`
	Resyncs   float64 `json:"resyncs"`
	Seq       float64 `json:"seq"`
	Snapshots float64 `json:"snapshots"`
}

func (tb *tab) view() pageView {
	tb.t.Helper()
	var v pageView
	tb.eval(`window.storeflowView || null`, &v)
	return v
}

// screenshot saves a PNG of the tab's viewport as name in ARTIFACTS_DIR (else
// the repository's artifacts/), and in docs/img with -update-screenshots.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	dirs := []string{os.Getenv("ARTIFACTS_DIR")}
	if dirs[0] == "" {
		dirs[0] = filepath.Join("..", "artifacts")
	}
	if *updateScreenshots {
		dirs = append(dirs, filepath.Join("..", "docs", "img"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		path, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			tb.t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		tb.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
}

// dot is a shopper as the store page draws it.
type dot struct {
	ID string `json:"id"`
	X  string `json:"cx"`
	Y  string `json:"cy"`
}

const readDots = `Array.from(document.querySelectorAll('svg#plan circle.shopper')).map(c =>
	({id: c.dataset.id, cx: c.getAttribute('cx'), cy: c.getAttribute('cy')}))`

// card is a coupon card of the store page: whose, which coupon, and whether
// it links to that shopper's phone page.
type card struct {
	Customer string `json:"customer"`
	Coupon   string `json:"coupon"`
	Linked   bool   `json:"linked"`
}

const readCards = `Array.from(document.querySelectorAll('#coupons .coupon-card')).map(c =>
	({customer: c.dataset.customer, coupon: c.dataset.coupon,
	  linked: c.querySelector('a[href="/phone/' + CSS.escape(c.dataset.customer) + '"]') !== null}))`

// A shopper walking, the coupon an outside subscriber received, and the same
// coupon on that shopper's phone: the demo as a person sees it, in a real
// browser.
func TestBrowserStoreAndPhone(t *testing.T) {
	sys := startSystem(t, map[string]string{
		"SIMULATOR_ENABLED": "true",
		"SIMULATOR_SPEED":   "20",
	})
	obs := dial(t, sys.app.BrokerAddr(), "browser-observer", "customer/prediction")
	base := "http://" + sys.app.HTTPAddr()

	store := openTab(t, 1280, 800)
	store.open(base + "/")

	// Shoppers are drawn, and they walk.
	var first []dot
	harness.Until(t, 20*time.Second, "shoppers drawn on the plan", func() bool {
		store.eval(readDots, &first)
		return len(first) > 0
	})
	for _, d := range first {
		for _, v := range []string{d.X, d.Y} {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				t.Fatalf("shopper %s drawn at (%q, %q): not numbers", d.ID, d.X, d.Y)
			}
		}
	}
	was := map[string]dot{}
	for _, d := range first {
		was[d.ID] = d
	}
	harness.Until(t, 20*time.Second, "a shopper's dot moves", func() bool {
		var now []dot
		store.eval(readDots, &now)
		for _, d := range now {
			if w, ok := was[d.ID]; ok && (w.X != d.X || w.Y != d.Y) {
				return true
			}
		}
		return false
	})

	// A coupon card is one the outside subscriber received in this run.
	published := map[card]bool{}
	var shown card
	harness.Until(t, 40*time.Second, "a coupon card that the outside subscriber received too", func() bool {
		drain(t, obs, published)
		var cards []card
		store.eval(readCards, &cards)
		for _, c := range cards {
			if published[card{Customer: c.Customer, Coupon: c.Coupon}] {
				shown = c
				return true
			}
		}
		return false
	})
	if !shown.Linked {
		t.Errorf("coupon card %+v: no link to /phone/%s", shown, shown.Customer)
	}
	if v := store.view(); v.Events == 0 || v.Snapshots == 0 {
		t.Errorf("window.storeflowView = %+v: want events and a snapshot applied", v)
	}
	// The experiment panel: the model's arm with the coupons it got.
	harness.Until(t, 10*time.Second, "the experiment panel with the model's arm", func() bool {
		var row []string
		store.eval(`document.getElementById('experiment').hidden ? [] :
			Array.from(document.querySelectorAll('#experiment-arms tr')).map(r => r.cells[0].textContent + ' ' + r.cells[2].textContent)`, &row)
		for _, r := range row {
			if name, n, _ := strings.Cut(r, " "); name == "model" && n != "0" {
				return true
			}
		}
		return false
	})
	store.screenshot("store.png")

	// The same coupon on the shopper's phone.
	phone := openTab(t, 390, 844)
	phone.open(base + "/phone/" + shown.Customer)
	var id string
	phone.eval(`document.querySelector('#customer') && document.querySelector('#customer').textContent`, &id)
	if id != shown.Customer {
		t.Errorf("phone page #customer = %q, want %q", id, shown.Customer)
	}
	harness.Until(t, 10*time.Second, fmt.Sprintf("phone tile of coupon %s", shown.Coupon), func() bool {
		var n int
		phone.eval(fmt.Sprintf(`document.querySelectorAll('#tiles .tile[data-coupon=%q]').length`, shown.Coupon), &n)
		return n > 0
	})
	// Every tile is a coupon published for this shopper, none another's.
	// The subscriber was there before the first coupon: a coupon comes after
	// a dwell of 10 simulated seconds, half a second here.
	drain(t, obs, published)
	var tiles []string
	phone.eval(`Array.from(document.querySelectorAll('#tiles .tile')).map(e => e.dataset.coupon)`, &tiles)
	for _, c := range tiles {
		if !published[card{Customer: shown.Customer, Coupon: c}] {
			t.Errorf("phone of shopper %s shows coupon %s, not published for this shopper", shown.Customer, c)
		}
	}
	phone.screenshot("phone.png")
}

// drain adds the predictions obs has received so far to published.
func drain(t testing.TB, obs *client, published map[card]bool) {
	t.Helper()
	for {
		select {
		case m := <-obs.msg:
			published[predictionCard(t, m.Payload)] = true
		default:
			return
		}
	}
}

// predictionCard is the customer and coupon of a Prediction Results Message,
// as the store page's cards carry them.
func predictionCard(t testing.TB, payload []byte) card {
	t.Helper()
	var p struct {
		Customer struct{ ID string }
		Coupon   struct{ ID json.Number }
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Customer.ID == "" || p.Coupon.ID == "" {
		t.Fatalf("prediction %s: %v", payload, errors.Join(err, errors.New("want customer.id and coupon.id")))
	}
	return card{Customer: p.Customer.ID, Coupon: p.Coupon.ID.String()}
}
