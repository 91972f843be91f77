// Command sluice-devices simulates devices pushing readings to Sluice's
// WebSocket source with the Go device client, and reports throughput.
//
//	sluice-devices --url ws://127.0.0.1:8080/ingest --devices 50 --records 100000 --rate 0
//	sluice-devices --url wss://sluice.example/ingest --ca ca.pem --token-file device.token
//
// Each device is one client with its own connection, numbering its records
// and resending what is unacknowledged after a reconnect. The command
// prints a progress line per second and a summary, and exits 0 once every
// record is acknowledged, 1 on --timeout, on nacked records or on errors.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/device"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	url       string
	devices   int
	records   int
	rate      float64
	outboxDir string
	timeout   time.Duration
	prefix    string
	window    int
	logLevel  string
	token     string
	tokenFile string
	caFile    string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("sluice-devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "ws://127.0.0.1:8080/ingest", "Sluice WebSocket source URL")
	fs.IntVar(&cfg.devices, "devices", 50, "number of simulated devices, one connection each")
	fs.IntVar(&cfg.records, "records", 100000, "total records to send, split evenly across devices")
	fs.Float64Var(&cfg.rate, "rate", 0, "total records per second across all devices (0: as fast as acks allow)")
	fs.StringVar(&cfg.outboxDir, "outbox-dir", "", "keep each device's outbox in DIR/<device id> (survives restarts of this command)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long (0: never)")
	fs.StringVar(&cfg.prefix, "prefix", "dev-", "device id prefix; ids are PREFIX0001, PREFIX0002, …")
	fs.IntVar(&cfg.window, "window", 1024, "records in flight per device connection")
	fs.StringVar(&cfg.logLevel, "log-level", "warn", "device client log level: debug, info, warn or error")
	fs.StringVar(&cfg.token, "token", os.Getenv("SLUICE_TOKEN"), "bearer token for a source with auth: (default $SLUICE_TOKEN); every simulated device uses it, so it must grant all their ids")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "read the bearer token from this file (keeps it out of the process list)")
	fs.StringVar(&cfg.caFile, "ca", "", "PEM file of the CA certificates to trust for wss:// (default: the system's)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.devices <= 0 || cfg.records < 0 || cfg.rate < 0 {
		fmt.Fprintln(stderr, "sluice-devices: --devices must be positive, --records and --rate not negative")
		return 2
	}
	if cfg.tokenFile != "" {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "token" })
		if explicit {
			fmt.Fprintln(stderr, "sluice-devices: give --token or --token-file, not both")
			return 2
		}
		b, err := os.ReadFile(cfg.tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "sluice-devices: --token-file:", err)
			return 2
		}
		cfg.token = strings.TrimSpace(string(b))
	}
	var tlsCfg *tls.Config
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			fmt.Fprintln(stderr, "sluice-devices: --ca:", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "sluice-devices: --ca: %s holds no PEM certificate\n", cfg.caFile)
			return 2
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintln(stderr, "sluice-devices: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}

	width := max(4, len(strconv.Itoa(cfg.devices)))
	clients := make([]*device.Client, cfg.devices)
	for i := range clients {
		id := fmt.Sprintf("%s%0*d", cfg.prefix, width, i+1)
		opts := device.Options{DeviceID: id, Window: cfg.window, Logger: log.With("device", id), Token: cfg.token, TLSConfig: tlsCfg}
		if cfg.outboxDir != "" {
			opts.OutboxDir = filepath.Join(cfg.outboxDir, id)
		}
		c, err := device.New(cfg.url, opts)
		if err != nil {
			fmt.Fprintln(stderr, "sluice-devices:", err)
			for _, c := range clients[:i] {
				c.Close()
			}
			return 1
		}
		clients[i] = c
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		n := cfg.records / cfg.devices
		if i < cfg.records%cfg.devices {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := simulate(ctx, c, i, n, cfg.rate/float64(cfg.devices)); err != nil {
				errs <- err
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last device.Stats
	lastAt := start
	finished := false
	for !finished {
		select {
		case <-done:
			finished = true
		case <-ctx.Done():
			finished = true
		case now := <-tick.C:
			s := total(clients)
			rate := float64(s.Acked-last.Acked) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(stdout, "%6.1fs  sent %d  acked %d  nacked %d  resent %d  inflight %d  queued %d  %.0f acked/s\n",
				now.Sub(start).Seconds(), s.Sent, s.Acked, s.Nacked, s.Resent, s.Inflight, s.Queued, rate)
			last, lastAt = s, now
		}
	}
	elapsed := time.Since(start)
	s := total(clients)
	for _, c := range clients {
		c.Close() // with --outbox-dir, what is unacknowledged stays for the next run
	}
	var reconnects uint64
	if s.Connects > uint64(cfg.devices) {
		reconnects = s.Connects - uint64(cfg.devices)
	}
	fmt.Fprintf(stdout, "summary: devices %d  records %d  sent %d  acked %d  nacked %d  resent %d  reconnects %d  elapsed %s  %.0f records/s\n",
		cfg.devices, cfg.records, s.Sent, s.Acked, s.Nacked, s.Resent, reconnects,
		elapsed.Round(time.Millisecond), float64(s.Acked+s.Nacked)/elapsed.Seconds())
	close(errs)
	code := 0
	for err := range errs {
		if ctx.Err() == nil {
			fmt.Fprintln(stderr, "sluice-devices:", err)
			code = 1
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "sluice-devices: stopped before every record was acknowledged (%v): %d of %d settled\n",
			context.Cause(ctx), s.Acked+s.Nacked, cfg.records)
		code = 1
	case s.Nacked > 0:
		fmt.Fprintf(stderr, "sluice-devices: %d records were nacked (see the warnings above)\n", s.Nacked)
		code = 1
	}
	return code
}

func total(clients []*device.Client) device.Stats {
	var t device.Stats
	for _, c := range clients {
		s := c.Stats()
		t.Sent += s.Sent
		t.Resent += s.Resent
		t.Acked += s.Acked
		t.Nacked += s.Nacked
		t.Inflight += s.Inflight
		t.Queued += s.Queued
		t.Connects += s.Connects
	}
	return t
}

// simulate sends n readings from device number i at rate records/s (0:
// unlimited), then waits until all of them are settled.
func simulate(ctx context.Context, c *device.Client, i, n int, rate float64) error {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
	base := 18 + float64(i%10)
	start := time.Now()
	var buf []byte
	for k := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return nil
				}
			}
		}
		buf = reading(buf[:0], rng, base, k)
		if _, err := c.Send(ctx, buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	if err := c.Flush(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

var messages = []string{"ok", "sensor warm", "battery 81%", "door closed", "fan on", "calibrated"}

// reading renders one reading; the client adds device_id and seq in front,
// which makes it about 200 bytes.
func reading(b []byte, rng *rand.Rand, base float64, k int) []byte {
	temp := base + 3*math.Sin(float64(k)/500) + rng.NormFloat64()*0.2
	kind, msg := "reading", messages[rng.IntN(len(messages))]
	if rng.IntN(1000) == 0 {
		kind, msg = "alert", "temperature out of range"
	}
	b = append(b, `{"ts":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","temp":`...)
	b = strconv.AppendFloat(b, math.Round(temp*100)/100, 'f', -1, 64)
	b = append(b, `,"humidity":`...)
	b = strconv.AppendFloat(b, math.Round((40+rng.Float64()*20)*10)/10, 'f', -1, 64)
	b = append(b, `,"pressure":`...)
	b = strconv.AppendFloat(b, math.Round((1000+rng.Float64()*30)*100)/100, 'f', -1, 64)
	b = append(b, `,"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","msg":"`...)
	b = append(b, msg...)
	return append(b, `"}`...)
}
