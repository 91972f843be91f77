package registry

import (
	"context"
	"errors"
	"os"

	"github.com/sluicehq/sluice/endpoints/subscribe"
	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
	"github.com/sluicehq/sluice/sinks/clickhouse"
	"github.com/sluicehq/sluice/sinks/file"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	kafkasource "github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/sources/websocket"
)

// Default returns the registry of every component that ships with Sluice.
func Default() *Registry {
	return &Registry{
		Sources: map[string]Factory[pipeline.Source]{
			"websocket": Of(websocket.New, asSource[*websocket.Source]).WithCheck(securityFiles[websocket.Config]),
			"kafka":     Of(kafkasource.New, asSource[*kafkasource.Source]),
		},
		Transforms: map[string]Factory[pipeline.Transform]{
			"wasm": Of(wasm.New, asTransform[*wasm.Transform]).WithCheck(moduleExists),
		},
		Endpoints: map[string]Factory[pipeline.Endpoint]{
			"subscriptions": Of(subscribe.New, asEndpoint[*subscribe.Endpoint]).WithCheck(securityFiles[subscribe.Config]),
		},
		Sinks: map[string]Factory[pipeline.Sink]{
			"file":       Of(file.New, asSink[*file.Sink]),
			"stdout":     Of(newStdout, asSink[*file.Sink]),
			"kafka":      Of(kafkasink.New, asSink[*kafkasink.Sink]),
			"clickhouse": Of(clickhouse.New, asSink[*clickhouse.Sink]),
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

// moduleExists reports a wasm transform whose module file is missing, so
// that `sluice validate` catches it without compiling anything.
func moduleExists(c *pipeline.Component, dir string) error {
	var cfg wasm.Config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	path := pipeline.Resolve(dir, cfg.Module)
	if _, err := os.Stat(path); err != nil {
		return c.Wrap(pipeline.Invalid("module", "cannot read module file %s: %v", path, errors.Unwrap(err)))
	}
	return nil
}

// secured is a component config with optional tls: and auth: blocks.
type secured interface {
	websocket.Config | subscribe.Config
}

// securityFiles reports a certificate, key, tokens, secret or public key
// file that cannot be read, so that `sluice validate` catches it; their
// contents are checked when the component starts.
func securityFiles[C secured](c *pipeline.Component, dir string) error {
	var cfg C
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	var tlsCfg *auth.TLSConfig
	var authCfg *auth.Config
	switch v := any(&cfg).(type) {
	case *websocket.Config:
		tlsCfg, authCfg = v.TLS, v.Auth
	case *subscribe.Config:
		tlsCfg, authCfg = v.TLS, v.Auth
	}
	var files [][2]string // field, path
	if tlsCfg != nil {
		files = append(files, [2]string{"tls.cert", tlsCfg.Cert}, [2]string{"tls.key", tlsCfg.Key})
	}
	if authCfg != nil {
		files = append(files, [2]string{"auth.tokens_file", authCfg.TokensFile})
		if authCfg.JWT != nil {
			files = append(files, [2]string{"auth.jwt.secret_file", authCfg.JWT.SecretFile}, [2]string{"auth.jwt.public_key_file", authCfg.JWT.PublicKeyFile})
		}
	}
	for _, f := range files {
		if f[1] == "" {
			continue
		}
		path := pipeline.Resolve(dir, f[1])
		if _, err := os.Stat(path); err != nil {
			return c.Wrap(pipeline.Invalid(f[0], "cannot read %s: %v", path, errors.Unwrap(err)))
		}
	}
	return nil
}
