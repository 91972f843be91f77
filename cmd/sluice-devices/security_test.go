package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/auth/authtest"
	"github.com/sluicehq/sluice/pipeline"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

func TestSimulatorWithTLSAndToken(t *testing.T) {
	dir := t.TempDir()
	pki := authtest.NewPKI(t, dir)
	caFile := filepath.Join(dir, "ca.pem")
	authtest.WritePEM(t, caFile, "CERTIFICATE", pki.CA.Raw)
	const token = "simulator-token-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte(token+" sub=*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "device.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers := pipeline.NewServers(log)
	src, err := wssource.New(context.Background(), wssource.Config{
		Listen: "127.0.0.1:0",
		TLS:    &auth.TLSConfig{Cert: "server.crt", Key: "server.key"},
		Auth:   &auth.Config{TokensFile: "tokens.txt", DeviceClaim: "sub"},
	}, pipeline.Env{Logger: log, HTTP: servers, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	p := &pipeline.Pipeline{Name: "ws", Source: src, Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "mem", C: sink}}, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		servers.Shutdown(context.Background())
	})
	url := "wss://" + servers.Addr("127.0.0.1:0").String() + "/ingest"

	var stdout, stderr bytes.Buffer
	args := []string{"--url", url, "--ca", caFile, "--token-file", tokenFile, "--devices", "2", "--records", "200", "--timeout", "30s"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "acked 200") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	// Without the token nothing gets in, and the log says why.
	stdout.Reset()
	stderr.Reset()
	t.Setenv("SLUICE_TOKEN", "")
	args = []string{"--url", url, "--ca", caFile, "--devices", "1", "--records", "10", "--timeout", "1s"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d without a token\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	if !strings.Contains(stderr.String(), "401") {
		t.Fatalf("stderr does not say 401:\n%s", &stderr)
	}
}
