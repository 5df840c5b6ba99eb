package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/recommender"
)

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// gen then train, as the README shows: the same seed and reference give the
// same bytes, and train's last line carries the three figures. (The model's
// distance to the ceiling at the reference sizes is checked in recommender/train;
// here a smaller world keeps the race detector's cost down.)
func TestGenTrain(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, out := range []string{a, b} {
		if msg, err := runCmd(t, "gen", "--out", out, "--seed", "5", "--reference", "2025-03-01", "--customers", "300", "--days", "90"); err != nil {
			t.Fatalf("gen: %v\n%s", err, msg)
		}
	}
	for _, name := range []string{"customer_info.csv", "coupon_info.csv", "products.csv", "coupon_product.csv", "customer_preferences.csv", "coupon_history.csv"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
	}

	model := filepath.Join(dir, "model.json")
	out, err := runCmd(t, "train", "--data", a, "--out", model)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^model_roc_auc=(\d\.\d{4}) ceiling_roc_auc=(\d\.\d{4}) baseline_roc_auc=(\d\.\d{4})$`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q is not model_roc_auc=<x> ceiling_roc_auc=<y> baseline_roc_auc=<z>\n%s", last, out)
	}
	model_, _ := strconv.ParseFloat(m[1], 64)
	ceiling, _ := strconv.ParseFloat(m[2], 64)
	baseline, _ := strconv.ParseFloat(m[3], 64)
	t.Logf("%s", out)
	if model_ > ceiling+0.02 {
		t.Errorf("model %.4f beats the ground truth %.4f by more than chance allows", model_, ceiling)
	}
	if model_ <= baseline {
		t.Errorf("model %.4f does not beat the popularity baseline %.4f", model_, baseline)
	}
	if !strings.Contains(out, "PR AUC") {
		t.Errorf("train prints no PR AUC:\n%s", out)
	}
	if _, err := recommender.LoadModel(model); err != nil {
		t.Fatalf("the saved model does not load: %v", err)
	}
}

func TestGenTrainRejectBadUse(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]struct {
		args []string
		want string
	}{
		"gen without --out":     {[]string{"gen"}, "--out"},
		"gen bad reference":     {[]string{"gen", "--out", dir, "--reference", "22/11/2026"}, "YYYY-MM-DD"},
		"gen too few products":  {[]string{"gen", "--out", dir, "--products", "3"}, "products"},
		"gen negative days":     {[]string{"gen", "--out", dir, "--days", "-1"}, "days"},
		"train without --out":   {[]string{"train", "--data", dir}, "--out"},
		"train on missing data": {[]string{"train", "--data", filepath.Join(dir, "nope"), "--out", filepath.Join(dir, "m.json")}, "nope"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := runCmd(t, tt.args...)
			if err == nil || !strings.Contains(err.Error()+out, tt.want) {
				t.Fatalf("err = %v, output %q; want an error mentioning %q", err, out, tt.want)
			}
		})
	}
}

// passwd prints an auth-file line whose hash the embedded broker accepts.
func TestPasswd(t *testing.T) {
	var out bytes.Buffer
	if err := passwd([]string{"phone"}, strings.NewReader("s3cret\n"), &out); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(out.String())
	if !strings.HasPrefix(line, "user phone pbkdf2-sha256$") || strings.Contains(line, "s3cret") {
		t.Fatalf("passwd printed %q", line)
	}
	path := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(path, []byte(line+"\nacl phone read customer/prediction\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := broker.LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !auth.Authenticate("phone", []byte("s3cret")) || auth.Authenticate("phone", []byte("wrong")) {
		t.Fatal("the printed hash does not authenticate exactly the password given")
	}
	for name, args := range map[string][]string{"no user": nil, "two users": {"a", "b"}, "space in name": {"a b"}} {
		if err := passwd(args, strings.NewReader("pw\n"), &out); err == nil {
			t.Errorf("%s: passwd accepted %q", name, args)
		}
	}
	if err := passwd([]string{"phone"}, strings.NewReader(""), &out); err == nil {
		t.Error("passwd accepted an empty password")
	}
}
