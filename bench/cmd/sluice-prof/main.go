// Command sluice-prof is `sluice run` with profiling endpoints, for the
// benchmark harness: it loads a pipeline.yaml and runs it with
// internal/app.Serve (exactly what cmd/sluice runs), and serves
// net/http/pprof plus /bench/memstats on a separate loopback address so
// that the harness can take CPU and allocation profiles of a Sluice
// process that runs alone.
//
//	sluice-prof -c pipeline.yaml -pprof 127.0.0.1:6061 [-log-level warn]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/pipeline"
)

func main() {
	path := flag.String("c", "pipeline.yaml", "pipeline config file")
	addr := flag.String("pprof", "127.0.0.1:6061", "address for /debug/pprof and /bench/memstats (loopback)")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var l slog.Level
	if err := l.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-prof: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	file, err := pipeline.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/bench/memstats", func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]uint64{
			"mallocs": ms.Mallocs, "total_alloc": ms.TotalAlloc, "num_gc": uint64(ms.NumGC),
			"pause_total_ns": ms.PauseTotalNs, "heap_inuse": ms.HeapInuse, "goroutines": uint64(runtime.NumGoroutine()),
		})
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-prof:", err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(ln, mux) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Serve(ctx, file, log, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
