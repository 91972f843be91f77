package registry

import (
	"context"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sources/websocket"
)

// Default returns the registry of every component that ships with Sluice.
func Default() *Registry {
	return &Registry{
		Sources: map[string]Factory[pipeline.Source]{
			"websocket": Of(websocket.New, asSource[*websocket.Source]),
		},
		Transforms: map[string]Factory[pipeline.Transform]{},
		Endpoints:  map[string]Factory[pipeline.Endpoint]{},
		Sinks: map[string]Factory[pipeline.Sink]{
			"file":   Of(file.New, asSink[*file.Sink]),
			"stdout": Of(newStdout, asSink[*file.Sink]),
		},
	}
}

func asSource[T pipeline.Source](x T) pipeline.Source          { return x }
func asSink[T pipeline.Sink](x T) pipeline.Sink                { return x }
func asEndpoint[T pipeline.Endpoint](x T) pipeline.Endpoint    { return x }
func asTransform[T pipeline.Transform](x T) pipeline.Transform { return x }

// StdoutConfig configures the stdout sink: the file sink on standard output.
type StdoutConfig struct {
	// Metadata writes key, dest and identity beside each value.
	Metadata bool `yaml:"metadata"`
}

// Validate accepts every StdoutConfig.
func (*StdoutConfig) Validate() error { return nil }

func newStdout(ctx context.Context, cfg StdoutConfig, env pipeline.Env) (*file.Sink, error) {
	return file.New(ctx, file.Config{Path: "-", Metadata: cfg.Metadata}, env)
}
