package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/device"
)

// The device helper is this test binary started again with helperEnv set:
// a device process that tests can SIGKILL. Its settings come from the
// environment:
//
//	SLUICE_CHAOS_HELPER=1
//	SLUICE_CHAOS_URL=ws://…/ingest
//	SLUICE_CHAOS_DIR=dir        outboxes in dir/<device id>
//	SLUICE_CHAOS_IDS=a,b,c      device ids
//	SLUICE_CHAOS_PER=600        each device sends until its seq reaches this
//	SLUICE_CHAOS_RATE=30        records per second per device (0: unpaced),
//	                            sent in bursts of one second's worth
//	SLUICE_CHAOS_DEADLINE=5m    give up after this long
//
// It prints "progress sent=N resent=N acked=N" (this process's counters)
// whenever they change, "nack <id> <seq> <reason>" for a nacked record,
// and at the end, once everything is acknowledged, one line per device,
// "done <id> last=<seq> queued=<n> nacked=<n> resent=<n>", then "finished".
// Each device's seqs start at 1 and continue from its outbox after a
// restart, so a device that was killed resends what was unacknowledged and
// then goes on; it always sends at least one record per run, so its last
// seq may end up beyond PER by one per restart.
const helperEnv = "SLUICE_CHAOS_HELPER"

func deviceHelperMain() int {
	url := os.Getenv("SLUICE_CHAOS_URL")
	dir := os.Getenv("SLUICE_CHAOS_DIR")
	ids := strings.Split(os.Getenv("SLUICE_CHAOS_IDS"), ",")
	per, _ := strconv.ParseUint(os.Getenv("SLUICE_CHAOS_PER"), 10, 64)
	rate, _ := strconv.ParseFloat(os.Getenv("SLUICE_CHAOS_RATE"), 64)
	limit, err := time.ParseDuration(os.Getenv("SLUICE_CHAOS_DEADLINE"))
	if err != nil {
		limit = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var mu sync.Mutex // stdout lines
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Printf(format+"\n", args...)
		mu.Unlock()
	}
	clients := make([]*device.Client, len(ids))
	var nacked atomic.Int64
	for i, id := range ids {
		c, err := device.New(url, device.Options{
			DeviceID:  id,
			OutboxDir: filepath.Join(dir, id),
			FirstSeq:  1,
			Logger:    log.With("device", id),
			OnNack: func(_ []byte, err *device.NackError) {
				nacked.Add(1)
				say("nack %s %d %s", err.DeviceID, err.Seq, err.Reason)
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		clients[i] = c
	}
	stopReport := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		var last device.Stats
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-stopReport:
				return
			}
			var now device.Stats
			for _, c := range clients {
				st := c.Stats()
				now.Sent += st.Sent
				now.Resent += st.Resent
				now.Acked += st.Acked
			}
			if now.Sent != last.Sent || now.Resent != last.Resent || now.Acked != last.Acked {
				last = now
				say("progress sent=%d resent=%d acked=%d", now.Sent, now.Resent, now.Acked)
			}
		}
	}()
	lasts := make([]uint64, len(ids))
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			var buf []byte
			burst := max(1, int(rate))
			for k := 0; ; k++ {
				if rate > 0 && k%burst == 0 {
					due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							errs <- ctx.Err()
							return
						}
					}
				}
				buf = record(buf[:0], k)
				seq, err := c.Send(ctx, buf)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", ids[i], err)
					return
				}
				lasts[i] = seq
				if seq >= per {
					break
				}
			}
			if err := c.Flush(ctx); err != nil {
				errs <- fmt.Errorf("%s: flush: %w", ids[i], err)
			}
		}()
	}
	wg.Wait()
	close(stopReport)
	<-reported
	close(errs)
	code := 0
	for err := range errs {
		fmt.Fprintln(os.Stderr, "helper:", err)
		code = 1
	}
	for i, c := range clients {
		st := c.Stats()
		say("done %s last=%d queued=%d nacked=%d resent=%d", ids[i], lasts[i], st.Queued, st.Nacked, st.Resent)
		c.Close()
	}
	say("finished")
	return code
}
