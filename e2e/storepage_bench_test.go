package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"

	"github.com/storeflow/storeflow/internal/harness"
)

// BenchmarkStorePage is how much the store page keeps up with: the demo's
// simulator at a stepped rate of moves, the page open in Chromium for
// storePageWindow, and what the page applied, what the server dropped for
// it, and the page's memory. A page that cannot keep up is told to resync:
// the first step with resyncs is the limit. Run it alone, it takes the
// machine: go test -run '^$' -bench StorePage -benchtime 1x ./e2e
func BenchmarkStorePage(b *testing.B) {
	const shoppers = 200 // in the store on average
	for _, moves := range []int{1000, 5000, 10000, 15000, 20000} {
		b.Run(fmt.Sprintf("moves_per_s=%d", moves), func(b *testing.B) {
			sys := startSystem(b, map[string]string{
				"SIMULATOR_ENABLED":          "true",
				"SIMULATOR_SPEED":            strconv.FormatFloat(float64(moves)/shoppers, 'g', -1, 64),
				"CUSTOMERS_AVERAGE_IN_STORE": strconv.Itoa(shoppers),
				"LOG_LEVEL":                  "error",
			})
			page := openTab(b, 1280, 800)
			// Past the limit the page may never be live: it is measured all
			// the same, from its first snapshot.
			url := "http://" + sys.app.HTTPAddr() + "/"
			page.do("open "+url, chromedp.Navigate(url))
			harness.Until(b, 20*time.Second, url+": a snapshot fetched", func() bool {
				var ok bool
				page.eval(`window.storeflowView !== undefined && window.storeflowView.snapshots > 0`, &ok)
				return ok
			})
			b.ResetTimer()
			for range b.N {
				page.measure(b, sys)
			}
		})
	}
}

// storePageWindow is how long one measurement watches the page.
const storePageWindow = 10 * time.Second

// measure watches the open page for storePageWindow and reports, per second,
// the events the simulator published and the page applied; over the window
// the resyncs, the snapshots the page fetched and the server's drops; and at
// the end whether the page was live (1) and its memory.
func (tb *tab) measure(b *testing.B, sys *system) {
	b.Helper()
	const published, dropped = "storeflow_simulator_events_published_total", "storeflow_view_events_dropped_total"
	p0, d0 := sys.metric(b, published), sys.metric(b, dropped)
	v0, t0 := tb.view(), time.Now()
	time.Sleep(storePageWindow) // the measurement window, not a wait for a condition
	v1, secs := tb.view(), time.Since(t0).Seconds()
	b.ReportMetric((sys.metric(b, published)-p0)/secs, "published-events/s")
	b.ReportMetric((v1.Events-v0.Events)/secs, "page-events/s")
	b.ReportMetric(v1.Resyncs-v0.Resyncs, "resyncs")
	b.ReportMetric(v1.Snapshots-v0.Snapshots, "snapshots")
	b.ReportMetric(sys.metric(b, dropped)-d0, "dropped")
	var live float64
	tb.eval(`document.querySelector('#status[data-state="live"]') !== null ? 1 : 0`, &live)
	b.ReportMetric(live, "live")
	b.ReportMetric(tb.jsHeapUsed()/1e6, "js-heap-MB")
	if rss, ok := tb.rendererRSS(); ok {
		b.ReportMetric(rss/1e6, "renderer-rss-MB")
	}
}

// jsHeapUsed is the page's JSHeapUsedSize in bytes (CDP Performance.getMetrics).
func (tb *tab) jsHeapUsed() float64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	var used float64
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, performance.Enable, performance.EnableParams{}); err != nil {
			return err
		}
		r, err := cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			return err
		}
		for _, m := range r.Metrics {
			if m.Name == "JSHeapUsedSize" {
				used = m.Value
				return nil
			}
		}
		return fmt.Errorf("no JSHeapUsedSize in %d metrics", len(r.Metrics))
	}))
	if err != nil {
		tb.t.Fatalf("browser: performance metrics: %v", err)
	}
	return used
}

// rendererRSS is the resident memory in bytes of the largest renderer
// process of the tab's browser (the one page open in it), read from /proc;
// false where there is no /proc.
func (tb *tab) rendererRSS() (float64, bool) {
	proc := chromedp.FromContext(tb.ctx).Browser.Process()
	if proc == nil {
		return 0, false
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	parent := map[int]int{}
	var renderers []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("--type=renderer")) {
			renderers = append(renderers, pid)
		}
	}
	var largest float64
	found := false
	for _, pid := range renderers {
		p := pid
		for p > 1 && p != proc.Pid {
			p = parent[p]
		}
		if p != proc.Pid {
			continue // another browser's
		}
		if rss, ok := residentBytes(pid); ok && rss > largest {
			largest, found = rss, true
		}
	}
	return largest, found
}

// residentBytes is a process's VmRSS.
func residentBytes(pid int) (float64, bool) {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err == nil
		}
	}
	return 0, false
}
