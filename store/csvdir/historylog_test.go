package csvdir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/store"
)

// A history appended across restarts (and a crash in mid-row) is a
// coupon_history.csv Load reads as Write would have written it.
func TestHistoryLogAcrossRestarts(t *testing.T) {
	dir := csvValidDir(t)
	if err := os.Remove(filepath.Join(dir, historyFile)); err != nil {
		t.Fatal(err)
	}
	day := func(s string) store.Day {
		d, err := store.ParseDay(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	want := []store.HistoryEntry{
		{CustomerID: "1", CouponID: 1, Day: day("2024-05-02"), Used: true},
		{CustomerID: "2", CouponID: 3, Day: day("2024-05-02")},
		{CustomerID: "1", CouponID: 2, Day: day("2024-05-03"), Used: true},
	}
	path := filepath.Join(dir, historyFile)
	appendRows := func(rows []store.HistoryEntry) {
		t.Helper()
		h, err := OpenHistoryLog(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range rows {
			if err := h.Append(o); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendRows(want[:2])
	// A crash in the middle of the next row: its start reached the disk.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("2,3,2024-0"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h, err := OpenHistoryLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Repaired != int64(len("2,3,2024-0")) {
		t.Errorf("Repaired = %d bytes, want the torn row's %d", h.Repaired, len("2,3,2024-0"))
	}
	h.Close()
	appendRows(want[2:])

	tables, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tables.History, want) {
		t.Errorf("History = %+v, want %+v", tables.History, want)
	}
	// The same bytes as Write gives the same rows.
	other := t.TempDir()
	if err := Write(other, &Tables{Catalog: tables.Catalog, History: want}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(filepath.Join(other, historyFile))
	if string(a) != string(b) {
		t.Errorf("appended file:\n%s\nWrite's:\n%s", a, b)
	}
}

// A crash while the header was written leaves it without its line end:
// the next open writes it whole before the first row.
func TestHistoryLogTornHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), historyFile)
	if err := os.WriteFile(path, []byte("customer_id,coupon_id,date,used"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := OpenHistoryLog(path)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := store.ParseDay("2024-05-02")
	if err := h.Append(store.HistoryEntry{CustomerID: "1", CouponID: 2, Day: d}); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "customer_id,coupon_id,date,used\n1,2,2024-05-02,0\n" {
		t.Errorf("file %q", b)
	}
}

func TestHistoryLogRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer_info.csv")
	if err := os.WriteFile(path, []byte(csvValid[customersFile]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenHistoryLog(path); err == nil || !strings.Contains(err.Error(), "header") {
		t.Fatalf("OpenHistoryLog of customer_info.csv: %v, want an error about the header", err)
	}
	before, _ := os.ReadFile(path)
	if string(before) != csvValid[customersFile] {
		t.Error("the file was changed")
	}
	if _, err := OpenHistoryLog(filepath.Join(path, "under-a-file.csv")); err == nil {
		t.Error("a path under a file: no error")
	}
}

func TestHistoryLine(t *testing.T) {
	d, _ := store.ParseDay("2024-05-02")
	for _, tc := range []struct {
		o    store.HistoryEntry
		want string
	}{
		{store.HistoryEntry{CustomerID: "12", CouponID: 3, Day: d, Used: true}, "12,3,2024-05-02,1"},
		{store.HistoryEntry{CustomerID: `a,"b`, CouponID: 3, Day: d}, `"a,""b",3,2024-05-02,0`},
	} {
		if got := HistoryLine(tc.o); got != tc.want {
			t.Errorf("HistoryLine(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
}
