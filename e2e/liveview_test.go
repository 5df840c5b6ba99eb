package e2e

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// On an external broker the live view follows the store through storeflow's
// own session, beside the pipeline: a page's stream gets the shopper's
// enter, moves, focus and coupon, in order, and the pipeline still issues
// the coupon (the view's subscription to the same topics takes nothing from
// it).
func TestLiveViewOnExternalBroker(t *testing.T) {
	sys, addr := startExternal(t, nil)
	sensor := dialAs(t, addr, "sensor", phoneUser, phonePassword, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+sys.app.HTTPAddr()+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	s := lingerInBoys(t, sys, sensor)
	var kinds []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: coupon") {
		if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok && (len(kinds) == 0 || kinds[len(kinds)-1] != k) {
			kinds = append(kinds, k)
		}
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("no coupon on the page's stream (saw %v): %v", kinds, err)
	}
	if got := strings.Join(kinds, " "); got != "enter move focus" && got != "enter move focus move" {
		t.Errorf("stream before the coupon: %q, want enter, moves, focus", got)
	}
	sc.Scan()
	if data := sc.Text(); !strings.Contains(data, `"customer":{"id":"`+s.id+`"}`) {
		t.Errorf("coupon on the stream: %s, want one for %s", data, s.id)
	}
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=published")
}
