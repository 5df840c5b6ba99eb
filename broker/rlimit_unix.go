//go:build unix

package broker

import (
	"log/slog"
	"syscall"
)

// warnFileLimit says so at start when BROKER_MAX_CONNECTIONS could use up the
// process's file descriptors: then the HTTP endpoints and Redis would fail
// before the cap is reached. (Go raises the soft limit to the hard one.)
func warnFileLimit(maxConns int, log *slog.Logger) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	const reserve = 256 // listeners, HTTP, Redis, files
	if r.Cur < uint64(maxConns)+reserve {
		log.Warn("BROKER_MAX_CONNECTIONS is close to the file descriptor limit: lower it, or raise the limit (ulimit -n)",
			"max_connections", maxConns, "nofile", r.Cur)
	}
}
