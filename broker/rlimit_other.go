//go:build !unix

package broker

import "log/slog"

func warnFileLimit(int, *slog.Logger) {}
