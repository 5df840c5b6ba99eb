package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/storeflow/storeflow/recommender"
)

// File keeps a Model loaded from its file. A replacement is noticed by
// polling the file's identity, size and modification time, and read once
// it has held still for one poll; Check(true) (SIGHUP) reads it at once. A
// file that changes while it is read is read again at the next poll, and
// one that is no model (half written, another format, a bad tree) is
// refused with one log line while the model in use stays.
type File struct {
	name  string // the setting, for people: MODEL_FILE or MODEL_B_FILE
	path  string
	model *Model
	log   *slog.Logger

	mu      sync.Mutex  // Check runs from the poller and from SIGHUP
	seen    os.FileInfo // the file as last read, loaded or refused; nil: missing
	pending os.FileInfo // a change the last poll saw, read when the next sees the same
}

// errChanged is a file that changed while it was read.
var errChanged = errors.New("the file changed while it was read")

// LoadFile loads the model of path (the setting name, e.g. MODEL_FILE) for
// arm: at start, where a file that is no model is an error.
func LoadFile(name, path, arm string, metrics *Metrics, log *slog.Logger) (*File, error) {
	m, data, fi, err := readModel(path)
	if errors.Is(err, errChanged) { // replaced as we started: once more
		m, data, fi, err = readModel(path)
	}
	if err != nil {
		return nil, fmt.Errorf("recommender: %s %s: %w", name, path, err)
	}
	f := &File{name: name, path: path, log: log, seen: fi}
	f.model = NewModel(arm, m, "file", data, metrics)
	log.Info("model loaded", "setting", name, "file", path, "arm", arm, "trees", len(m.Trees), "hash", f.model.Hash())
	return f, nil
}

// Model is the model in use.
func (f *File) Model() *Model { return f.model }

// Run checks the file every interval until ctx is done.
func (f *File) Run(ctx context.Context, every time.Duration) error {
	return repeat(ctx, every, func() { f.Check(false) })
}

// repeat calls do every interval until ctx is done.
func repeat(ctx context.Context, every time.Duration, do func()) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			do()
		}
	}
}

// Check reads the file again if it changed since it was last read and has
// held still since the last check, or at once when force is set; a model
// read whole is put in use.
func (f *File) Check(force bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		if f.seen != nil || force { // said once per disappearance
			f.seen, f.pending = nil, nil
			f.refuse(err)
		}
		return
	}
	if !force {
		if sameFile(fi, f.seen) {
			f.pending = nil
			return
		}
		if !sameFile(fi, f.pending) { // still moving, perhaps: read it when it holds still
			f.pending = fi
			return
		}
	}
	f.pending = nil
	m, data, read, err := readModel(f.path)
	switch {
	case errors.Is(err, errChanged):
		return // being written: the next polls read it once it holds still
	case err != nil:
		f.seen = read
		if read == nil {
			f.seen = fi
		}
		f.refuse(err)
		return
	}
	f.seen = read
	hash := f.model.swap(m, "file", data)
	f.model.m.reloads.WithLabelValues(f.model.arm, OutcomeLoaded).Inc()
	f.log.Info("model reloaded", "setting", f.name, "file", f.path, "arm", f.model.arm, "trees", len(m.Trees), "hash", hash)
}

func (f *File) refuse(err error) {
	f.model.m.reloads.WithLabelValues(f.model.arm, OutcomeRefused).Inc()
	f.log.Error("model file refused: the model in use is kept", "setting", f.name, "file", f.path, "arm", f.model.arm, "reason", err)
}

// readModel reads and checks the model in path, and says what the file was
// as read. A file replaced or written to while it was read is errChanged.
func readModel(path string) (*recommender.Model, []byte, os.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer fh.Close()
	before, err := fh.Stat()
	if err != nil {
		return nil, nil, nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, nil, before, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(fh, recommender.MaxModelBytes+1))
	if err != nil {
		return nil, nil, before, err
	}
	if after, err := os.Stat(path); err != nil || !sameFile(before, after) {
		return nil, nil, before, errChanged
	}
	m, err := recommender.ReadModel(bytes.NewReader(data))
	if err != nil {
		return nil, nil, before, err
	}
	return m, data, before, nil
}

// sameFile tells whether a and b are the same file unchanged: the same
// identity (a file renamed over it is another), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
