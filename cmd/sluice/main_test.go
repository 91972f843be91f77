package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok.wasm"), []byte("\x00asm"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		code int
		want []string // lines of output, each with the file's path prefixed
	}{
		{
			name: "valid",
			yaml: `
pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:8080 } }
    transforms: [ { wasm: { module: ok.wasm } } ]
    sinks: [ { kafka: { brokers: [127.0.0.1:9092], topic: t } } ]
`,
			code: 0,
			want: []string{": ok (1 pipelines)"},
		},
		{
			name: "every problem at once, with file and line",
			yaml: `
pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:8080, pth: /x } }
    transforms:
      - wasm: { module: missing.wasm }
    sinks:
      - kafak: { brokers: [127.0.0.1:9092] }
      - kafka: { brokers: [127.0.0.1:9092], topic: t, batch_size: lots }
      - clickhouse: { addr: 127.0.0.1:9000 }
`,
			code: 1,
			want: []string{
				`:4: pipelines.ingest.source.websocket.pth: unknown field "pth" (valid: auth, batch_size, device_field, linger, listen, max_record_bytes, origin_patterns, path, require_seq, seq_field, tls, window)`,
				`:6: pipelines.ingest.transforms[0].wasm.module: cannot read module file ` + filepath.Join(dir, "missing.wasm") + `: no such file or directory`,
				`:8: pipelines.ingest.sinks[0]: unknown sink kind "kafak" (known: clickhouse, file, kafka, stdout)`,
				":9: pipelines.ingest.sinks[1].kafka.batch_size: cannot unmarshal !!str `lots` into int",
				`:10: pipelines.ingest.sinks[2].clickhouse.table: required`,
			},
		},
		{
			name: "unknown top-level key",
			yaml: "pipeline:\n  a: {}\n",
			code: 1,
			want: []string{`:1: pipeline: unknown field "pipeline" (valid: endpoints, http, pipelines)`},
		},
		{
			name: "no sinks",
			yaml: "pipelines:\n  a:\n    source: { websocket: { listen: 127.0.0.1:1 } }\n",
			code: 1,
			want: []string{`:3: pipelines.a.sinks: required: at least one sink`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "pipeline.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"validate", "-c", path}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			out := strings.TrimSpace(stdout.String() + stderr.String())
			var want []string
			for _, w := range tc.want {
				want = append(want, path+w)
			}
			if got, w := out, strings.Join(want, "\n"); got != w {
				t.Fatalf("output:\n%s\nwant:\n%s", got, w)
			}
		})
	}
}

// TestRunUnreachableServices: a service that is down at start is an error
// naming the service and its address, promptly, not a hang.
func TestRunUnreachableServices(t *testing.T) {
	tests := []struct {
		name string
		sink string
		want string
	}{
		{
			name: "kafka",
			sink: "kafka: { brokers: [127.0.0.1:1], topic: t }",
			want: "pipelines.ingest.sinks[0].kafka: kafka: brokers 127.0.0.1:1 unreachable",
		},
		{
			name: "clickhouse",
			sink: "clickhouse: { addr: 127.0.0.1:1, table: t, dial_timeout: 1s }",
			want: "pipelines.ingest.sinks[0].clickhouse: clickhouse 127.0.0.1:1: connect",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, "pipeline.yaml", `
pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:0 } }
    sinks:
      - `+tc.sink+"\n")
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(context.Background(), []string{"run", "-c", path, "--log-level", "error"}, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Fatalf("took %v to report an unreachable service", took)
			}
			if !strings.Contains(stderr.String(), path+":6: "+tc.want) {
				t.Fatalf("stderr:\n%s\nwant it to contain:\n%s", stderr.String(), path+":6: "+tc.want)
			}
		})
	}
}

// TestRunMissingTopic: the Kafka sink never creates topics by accident.
func TestRunMissingTopic(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("missing")
	path := write(t, "pipeline.yaml", `
pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:0 } }
    sinks:
      - kafka: { brokers: [`+brokers[0]+`], topic: `+topic+` }
`)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"run", "-c", path}, &stdout, &stderr)
	want := path + `:6: pipelines.ingest.sinks[0].kafka: kafka: topic "` + topic + `" does not exist on ` + brokers[0] +
		` (create it with scripts/services.sh topics ` + topic + `, or set create_topic: true)`
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr.String(), want)
	}
}
