// Package registry maps the component kinds of pipeline.yaml to their
// constructors, and builds runnable pipelines from a parsed file.
//
// It is the one place that knows every component: pipeline/ knows none, and
// components know only pipeline/. Adding a kind is one line in Default.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/pipeline"
)

// Factory checks and builds one kind of component of type T.
type Factory[T any] struct {
	// Check decodes and validates the component's config without
	// connecting to anything.
	Check func(c *pipeline.Component, dir string) error
	// Build decodes, validates and constructs the component.
	Build func(ctx context.Context, c *pipeline.Component, env pipeline.Env) (T, error)
}

// Registry holds the factories by kind.
type Registry struct {
	Sources    map[string]Factory[pipeline.Source]
	Transforms map[string]Factory[pipeline.Transform]
	Sinks      map[string]Factory[pipeline.Sink]
	Endpoints  map[string]Factory[pipeline.Endpoint]
}

// configurable is a component Config: decoded from YAML, then validated.
type configurable[C any] interface {
	*C
	Validate() error
}

// Of returns a Factory for a component whose Config type C has a
// Validate method and whose constructor is newFn.
func Of[C any, P configurable[C], T any, X any](newFn func(context.Context, C, pipeline.Env) (X, error), as func(X) T) Factory[T] {
	decode := func(c *pipeline.Component) (C, error) {
		var cfg C
		if err := c.Decode(&cfg); err != nil {
			return cfg, err
		}
		if err := P(&cfg).Validate(); err != nil {
			return cfg, c.Wrap(err)
		}
		return cfg, nil
	}
	return Factory[T]{
		Check: func(c *pipeline.Component, _ string) error {
			_, err := decode(c)
			return err
		},
		Build: func(ctx context.Context, c *pipeline.Component, env pipeline.Env) (T, error) {
			var zero T
			cfg, err := decode(c)
			if err != nil {
				return zero, err
			}
			x, err := newFn(ctx, cfg, env)
			if err != nil {
				return zero, c.Wrap(err)
			}
			return as(x), nil
		},
	}
}

// WithCheck returns f with an extra check that runs after the config is
// valid, e.g. that a file it names exists.
func (f Factory[T]) WithCheck(extra func(c *pipeline.Component, dir string) error) Factory[T] {
	check := f.Check
	f.Check = func(c *pipeline.Component, dir string) error {
		if err := check(c, dir); err != nil {
			return err
		}
		return extra(c, dir)
	}
	return f
}

func known[T any](m map[string]Factory[T]) string {
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

func lookup[T any](m map[string]Factory[T], what string, c *pipeline.Component) (Factory[T], error) {
	f, ok := m[c.Kind]
	if !ok {
		return f, c.Errorf("unknown %s kind %q (known: %s)", what, c.Kind, known(m))
	}
	return f, nil
}

// Check validates every component of file without connecting to anything:
// what `sluice validate` runs. It reports every problem it finds.
func (r *Registry) Check(file *pipeline.File, dir string) error {
	var errs []error
	for i := range file.Pipelines {
		p := &file.Pipelines[i]
		check := func(err error) {
			if err != nil {
				errs = append(errs, err)
			}
		}
		if f, err := lookup(r.Sources, "source", &p.Source); err != nil {
			check(err)
		} else {
			check(f.Check(&p.Source, dir))
		}
		for j := range p.Transforms {
			if f, err := lookup(r.Transforms, "transform", &p.Transforms[j]); err != nil {
				check(err)
			} else {
				check(f.Check(&p.Transforms[j], dir))
			}
		}
		sinks := p.Sinks
		if p.DeadLetter != nil {
			sinks = append(slices.Clip(sinks), *p.DeadLetter)
		}
		for j := range sinks {
			if f, err := lookup(r.Sinks, "sink", &sinks[j]); err != nil {
				check(err)
			} else {
				check(f.Check(&sinks[j], dir))
			}
		}
	}
	for i := range file.Endpoints {
		c := &file.Endpoints[i]
		if f, err := lookup(r.Endpoints, "endpoint", c); err != nil {
			errs = append(errs, err)
		} else if err := f.Check(c, dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// BuildEndpoints constructs every endpoint of file. On error, what was
// built is closed again.
func (r *Registry) BuildEndpoints(ctx context.Context, file *pipeline.File, env pipeline.Env) (_ []pipeline.Endpoint, err error) {
	var built []pipeline.Endpoint
	defer func() {
		if err != nil {
			for _, e := range slices.Backward(built) {
				_ = e.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	logger := env.Logger
	if logger == nil {
		logger = slog.Default()
	}
	for i := range file.Endpoints {
		c := &file.Endpoints[i]
		e := env
		e.Logger = logger.With("endpoint", c.Where)
		if env.Metrics != nil {
			e.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": c.Where}, env.Metrics)
		}
		ep, err := r.Endpoints[c.Kind].Build(ctx, c, e)
		if err != nil {
			return nil, err
		}
		built = append(built, ep)
	}
	return built, nil
}

// Build constructs every pipeline of file. On error, what was built is
// closed again.
func (r *Registry) Build(ctx context.Context, file *pipeline.File, env pipeline.Env) (_ []*pipeline.Pipeline, err error) {
	if err := r.Check(file, env.Dir); err != nil {
		return nil, err
	}
	var built []*pipeline.Pipeline
	var closers []func(context.Context) error
	defer func() {
		if err != nil {
			for _, c := range slices.Backward(closers) {
				_ = c(context.WithoutCancel(ctx))
			}
		}
	}()
	logger := env.Logger
	if logger == nil {
		logger = slog.Default()
	}
	for _, spec := range file.Pipelines {
		plog := logger.With("pipeline", spec.Name)
		cenv := func(stage string) pipeline.Env {
			e := env
			e.Logger = plog.With("stage", stage)
			if env.Metrics != nil {
				e.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": spec.Name, "stage": stage}, env.Metrics)
			}
			return e
		}
		p := &pipeline.Pipeline{
			Name:         spec.Name,
			Workers:      spec.Workers,
			DrainTimeout: spec.DrainTimeout,
			Logger:       plog,
			Metrics:      env.Metrics,
		}
		src, err := r.Sources[spec.Source.Kind].Build(ctx, &spec.Source, cenv("source"))
		if err != nil {
			return nil, err
		}
		closers = append(closers, src.Close)
		p.Source = src
		for i := range spec.Transforms {
			c := &spec.Transforms[i]
			name := fmt.Sprintf("transforms[%d].%s", i, c.Kind)
			t, err := r.Transforms[c.Kind].Build(ctx, c, cenv(name))
			if err != nil {
				return nil, err
			}
			closers = append(closers, t.Close)
			p.Transforms = append(p.Transforms, pipeline.Stage[pipeline.Transform]{Name: name, C: t})
		}
		for i := range spec.Sinks {
			c := &spec.Sinks[i]
			name := fmt.Sprintf("sinks[%d].%s", i, c.Kind)
			s, err := r.Sinks[c.Kind].Build(ctx, c, cenv(name))
			if err != nil {
				return nil, err
			}
			closers = append(closers, s.Close)
			p.Sinks = append(p.Sinks, pipeline.Stage[pipeline.Sink]{Name: name, C: s})
		}
		if spec.DeadLetter != nil {
			s, err := r.Sinks[spec.DeadLetter.Kind].Build(ctx, spec.DeadLetter, cenv("dead_letter"))
			if err != nil {
				return nil, err
			}
			closers = append(closers, s.Close)
			p.DeadLetter = s
		}
		built = append(built, p)
	}
	return built, nil
}
