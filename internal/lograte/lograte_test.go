package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// A flood of lines is cut to the burst, and the next line written after
// the bucket refills reports how many were left out.
func TestLimits(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(log, 100*time.Millisecond, 3)
	for i := range 50 {
		l.Warn("client refused", "i", i)
	}
	if got := strings.Count(buf.String(), "client refused"); got != 3 {
		t.Fatalf("after 50 lines at once: %d written, want the burst of 3:\n%s", got, buf.String())
	}
	if strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("a line within the burst reports suppressed lines:\n%s", buf.String())
	}
	time.Sleep(150 * time.Millisecond)
	buf.Reset()
	l.Warn("client refused", "i", 50)
	if !strings.Contains(buf.String(), "suppressed=47") {
		t.Fatalf("the first line after the pause: got %q, want suppressed=47", buf.String())
	}
	buf.Reset()
	time.Sleep(150 * time.Millisecond)
	l.Info("client refused", "i", 51)
	if got := buf.String(); !strings.Contains(got, "level=INFO") || strings.Contains(got, "suppressed") {
		t.Fatalf("with nothing left out: got %q, want an INFO line without suppressed", got)
	}
}

// Lines below the logger's level are neither written nor counted.
func TestDisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), time.Hour, 1)
	for range 10 {
		l.Info("noise")
	}
	l.Warn("kept")
	if got := buf.String(); strings.Contains(got, "noise") || strings.Contains(got, "suppressed") || !strings.Contains(got, "kept") {
		t.Fatalf("got %q, want only the warning, with no suppressed count", got)
	}
}

// Lines from many goroutines at once: the burst is written (slog's
// handler serializes the writes), every other line counted once.
func TestConcurrent(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour, 5)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Warn("x")
			}
		})
	}
	wg.Wait()
	if got := strings.Count(buf.String(), "msg=x"); got != 5 {
		t.Fatalf("%d lines from 800 at once, want the burst of 5", got)
	}
	if got := l.suppressed.Load(); got != 795 {
		t.Fatalf("suppressed %d, want 795", got)
	}
}
