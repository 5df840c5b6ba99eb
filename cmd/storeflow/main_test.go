package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/internal/modeltest"
)

func TestEnvListsVariablesWithDefaults(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"env"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MQTT_PORT=1883\n", "STORE_HEIGHT=10\n", "FOCUS_GAP=20s\n", "COUPON_PREDICTION_TOPIC_NAME=customer/prediction\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("storeflow env lacks %q", want)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"fly"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `"fly"`) || !strings.Contains(errOut.String(), "usage:") {
		t.Fatalf("err = %v, stderr = %q", err, errOut.String())
	}
}

// bench runs the real wiring and reports every coupon it expects.
func TestBench(t *testing.T) {
	t.Setenv("MQTT_HOST", "")
	t.Setenv("MODEL_FILE", modeltest.File(t))
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-shoppers", "200"}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`focus\s+200 detected, 200 coupons published`).MatchString(out.String()) {
		t.Fatalf("bench output:\n%s", out.String())
	}
	for _, want := range []string{"events/s", "p50", "allocs per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-shoppers", "0"}, &out, &errOut); err == nil {
		t.Fatal("bench accepted -shoppers 0")
	}
}
