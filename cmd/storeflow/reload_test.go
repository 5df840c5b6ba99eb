package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
)

// SIGHUP reloads MODEL_FILE at once (the poll is an hour here): a broken
// file is refused with a log line naming it, a model file is put in use,
// and storeflow runs on. Before, SIGHUP's default ended the process.
func TestSIGHUPReloadsTheModel(t *testing.T) {
	httpAddr := proctest.FreeAddr(t)
	good, err := os.ReadFile(modeltest.File(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	sf, out, exited := startStoreflow(t, httpAddr, "BROKER_LISTEN_ADDR=127.0.0.1:0", "MODEL_FILE="+path, "MODEL_CHECK_EVERY=1h", "LOG_LEVEL=info")

	replace := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	hangup := func(want string, n int) {
		t.Helper()
		if err := sf.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		harness.Until(t, 10*time.Second, "log line "+want, func() bool {
			select {
			case err := <-exited:
				t.Fatalf("storeflow exited at SIGHUP: %v", err)
			default:
			}
			return strings.Count(out.String(), want) >= n
		})
	}
	replace([]byte(`{"format":"storeflow-gbt"`))
	hangup("model file refused", 1)
	if line := lastLine(out.String(), "model file refused"); !strings.Contains(line, path) || !strings.Contains(line, "not a model file") {
		t.Errorf("refusal %q: want the file and the reason", line)
	}
	replace(good)
	hangup("model reloaded", 1)
	waitReady(t, httpAddr, exited)
}

func lastLine(s, with string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], with) {
			return lines[i]
		}
	}
	return ""
}
