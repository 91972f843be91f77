// Package lograte limits how often a kind of log line is written, so that
// a client can not flood the log: a device retrying with a bad token, or
// sending record after record that its token does not grant, costs one
// line a second after a burst, not one per attempt. What is left out is
// counted and reported by the next line written.
package lograte

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limiter writes log lines through a token bucket: burst lines at once,
// then one per interval. It is safe for concurrent use.
type Limiter struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Int64
}

// New returns a Limiter that writes to log at most burst lines at once and
// then one per every.
func New(log *slog.Logger, every time.Duration, burst int) *Limiter {
	if log == nil {
		log = slog.Default()
	}
	return &Limiter{log: log, lim: rate.NewLimiter(rate.Every(every), burst)}
}

// Default is the limit the WebSocket components use for lines a client can
// cause: 20 at once, then one a second.
func Default(log *slog.Logger) *Limiter { return New(log, time.Second, 20) }

// Log writes the line if the limit allows it, with a "suppressed" count of
// the lines left out since the last one written; otherwise it only counts
// it.
func (l *Limiter) Log(level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	if !l.lim.Allow() {
		l.suppressed.Add(1)
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Warn is Log at slog.LevelWarn.
func (l *Limiter) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, args...) }

// Info is Log at slog.LevelInfo.
func (l *Limiter) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, args...) }
