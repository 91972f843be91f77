// Package app runs a parsed pipeline.yaml: it builds the components,
// serves HTTP, runs every pipeline and endpoint until the context ends, and
// reloads transforms on SIGHUP. cmd/sluice and the end-to-end tests share it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/registry"
)

// Reloader is implemented by transforms that can swap their code in place
// (WASM modules on SIGHUP).
type Reloader interface {
	Reload(ctx context.Context) error
}

// buildTimeout bounds building every component at start.
const buildTimeout = 5 * time.Minute

// Serve builds and runs every pipeline of file until ctx is done. started,
// if not nil, is called with the HTTP servers once they listen.
func Serve(ctx context.Context, file *pipeline.File, log *slog.Logger, started func(*pipeline.Servers)) error {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	servers := pipeline.NewServers(log)
	env := pipeline.Env{Logger: log, Metrics: metrics, Dir: filepath.Dir(file.Path), HTTP: servers}

	// Each component bounds its own network checks (an unreachable Kafka
	// or ClickHouse fails within seconds, naming the service); this bound
	// is only a backstop against a hang. It is generous because compiling
	// a large WASM module (a Go guest is megabytes) is CPU work that can
	// take tens of seconds on a loaded machine, and is not a hang.
	buildCtx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	reg := registry.Default()
	pipes, err := reg.Build(buildCtx, file, env)
	if err != nil {
		return err
	}
	endpoints, err := reg.BuildEndpoints(buildCtx, file, env)
	if err != nil {
		return err
	}
	if file.HTTP.Listen != "" {
		if err := servers.Handle(file.HTTP.Listen, "/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics})); err != nil {
			return err
		}
		if err := servers.Handle(file.HTTP.Listen, "/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})); err != nil {
			return err
		}
	}
	if err := servers.Start(); err != nil {
		return err
	}
	if started != nil {
		started(servers)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				reload(ctx, pipes, log)
			case <-ctx.Done():
				return
			}
		}
	}()

	log.Info("sluice running", "config", file.Path, "pipelines", len(pipes), "endpoints", len(endpoints))
	var wg sync.WaitGroup
	errs := make([]error, len(pipes)+len(endpoints))
	for i, p := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Run(ctx)
		}()
	}
	for i, e := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[len(pipes)+i] = e.Run(ctx)
		}()
	}
	wg.Wait()
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	for _, e := range endpoints {
		errs = append(errs, e.Close(shutdownCtx))
	}
	errs = append(errs, servers.Shutdown(shutdownCtx))
	log.Info("sluice stopped")
	return errors.Join(errs...)
}

func reload(ctx context.Context, pipes []*pipeline.Pipeline, log *slog.Logger) {
	for _, p := range pipes {
		for _, t := range p.Transforms {
			if r, ok := t.C.(Reloader); ok {
				if err := r.Reload(ctx); err != nil {
					log.Error("reload failed; the old module keeps running", "pipeline", p.Name, "stage", t.Name, "err", err)
				} else {
					log.Info("reloaded", "pipeline", p.Name, "stage", t.Name)
				}
			}
		}
	}
}
