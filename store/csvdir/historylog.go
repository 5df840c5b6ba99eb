package csvdir

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/storeflow/storeflow/store"
)

// historyRecord fills rec (len(historyColumns)) with one coupon_history.csv
// row: the one row form Write and HistoryLog share.
func historyRecord(o *store.HistoryEntry, rec []string) {
	rec[0] = o.CustomerID
	rec[1] = strconv.Itoa(o.CouponID)
	rec[2] = o.Day.String()
	rec[3] = "0"
	if o.Used {
		rec[3] = "1"
	}
}

// HistoryLine is one coupon_history.csv row as the file holds it, without
// the line end: for a copy of the history kept elsewhere (Redis).
func HistoryLine(o store.HistoryEntry) string {
	rec := make([]string, len(historyColumns))
	historyRecord(&o, rec)
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write(rec) // a strings.Builder does not fail
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// HistoryLog appends rows to a coupon_history.csv file as they happen, in
// the form Write gives it, so that Load (and training) reads it like a
// generated history. Appends are buffered; Sync makes them durable. It is
// not safe for concurrent use.
type HistoryLog struct {
	f   *os.File
	w   *csv.Writer
	rec []string
	// Repaired is how many bytes of a torn last row (a crash in mid-write)
	// OpenHistoryLog cut off.
	Repaired int64
}

// OpenHistoryLog opens path for appending, creating it (and its directory)
// with the header row when it does not exist. An existing file must start
// with coupon_history.csv's header, so that rows are never added to some
// other file; a last row without its line end, left by a crash, is cut off.
func OpenHistoryLog(path string) (*HistoryLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	h := &HistoryLog{f: f, rec: make([]string, len(historyColumns))}
	if err := h.prepare(); err != nil {
		f.Close()
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	h.w = csv.NewWriter(f)
	return h, nil
}

// prepare checks the header of a file that has one, writes it to an empty
// one, cuts a torn last row, and leaves the offset at the end.
func (h *HistoryLog) prepare() error {
	st, err := h.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 {
		return h.writeHeader()
	}
	first, err := bufio.NewReader(io.LimitReader(h.f, 256)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimRight(first, "\r\n") != strings.Join(historyColumns, ",") {
		return fmt.Errorf("not a %s: its first line is not the header %q", historyFile, strings.Join(historyColumns, ","))
	}
	end, err := lastLineEnd(h.f, size)
	if err != nil {
		return err
	}
	if end < size {
		if err := h.f.Truncate(end); err != nil {
			return err
		}
		h.Repaired = size - end
	}
	if _, err = h.f.Seek(end, io.SeekStart); err != nil {
		return err
	}
	if end == 0 { // the header itself was torn
		return h.writeHeader()
	}
	return nil
}

// writeHeader writes the header row to the empty file and syncs it.
func (h *HistoryLog) writeHeader() error {
	if _, err := h.f.WriteString(strings.Join(historyColumns, ",") + "\n"); err != nil {
		return err
	}
	return h.f.Sync()
}

// lastLineEnd returns the offset just past the file's last '\n' (size when
// the file ends with one; the header has one, so there is always one).
func lastLineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Append adds one row (buffered: Sync writes it out).
func (h *HistoryLog) Append(o store.HistoryEntry) error {
	historyRecord(&o, h.rec)
	return h.w.Write(h.rec)
}

// Sync writes the buffered rows and flushes them to the disk.
func (h *HistoryLog) Sync() error {
	h.w.Flush()
	if err := h.w.Error(); err != nil {
		return err
	}
	return h.f.Sync()
}

// Close syncs and closes the file.
func (h *HistoryLog) Close() error {
	err := h.Sync()
	return errors.Join(err, h.f.Close())
}
