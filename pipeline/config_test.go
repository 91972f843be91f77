package pipeline

import (
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	yaml := `
http: { listen: 127.0.0.1:9100 }
pipelines:
  store:
    source: { kafka: { topic: t } }
    sinks:
      - clickhouse: { table: t }
  ingest:
    source:
      websocket: { listen: 127.0.0.1:8080 }
    transforms:
      - wasm: { module: a.wasm }
      - wasm: { module: b.wasm }
    sinks:
      - kafka: { topic: t }
    dead_letter:
      file: { path: dead.jsonl }
    drain_timeout: 3s
`
	f, err := Parse("p.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.Pipelines); got != 2 {
		t.Fatalf("pipelines: got %d, want 2", got)
	}
	p := f.Pipelines[0]
	if p.Name != "ingest" {
		t.Fatalf("pipelines are sorted by name: got %s first", p.Name)
	}
	if p.Source.Kind != "websocket" || p.Source.Where != "pipelines.ingest.source" || p.Source.Line != 10 {
		t.Fatalf("source: got %+v", p.Source)
	}
	if p.Transforms[1].Kind != "wasm" || p.Transforms[1].Where != "pipelines.ingest.transforms[1]" {
		t.Fatalf("transform order: got %+v", p.Transforms)
	}
	if p.DeadLetter == nil || p.DeadLetter.Kind != "file" {
		t.Fatalf("dead_letter: got %+v", p.DeadLetter)
	}
	if p.DrainTimeout.String() != "3s" || f.Pipelines[1].DrainTimeout.String() != "10s" {
		t.Fatalf("drain_timeout: got %v and %v", p.DrainTimeout, f.Pipelines[1].DrainTimeout)
	}
	var cfg struct {
		Module string `yaml:"module"`
	}
	if err := p.Transforms[0].Decode(&cfg); err != nil || cfg.Module != "a.wasm" {
		t.Fatalf("decode: got %+v, %v", cfg, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "unknown top-level key",
			yaml: "pipelines:\n  a:\n    source: { x: {} }\n    sinks: [ { y: {} } ]\nhttpp: {}\n",
			want: `p.yaml:5: httpp: unknown field "httpp" (valid: endpoints, http, pipelines)`,
		},
		{
			name: "unknown pipeline key",
			yaml: "pipelines:\n  a:\n    source: { x: {} }\n    sink: [ { y: {} } ]\n",
			want: `p.yaml:4: pipelines.a.sink: unknown field "sink" (valid: dead_letter, drain_timeout, sinks, source, transforms, workers)`,
		},
		{
			name: "missing sinks",
			yaml: "pipelines:\n  a:\n    source: { x: {} }\n",
			want: `p.yaml:3: pipelines.a.sinks: required: at least one sink`,
		},
		{
			name: "component with two kinds",
			yaml: "pipelines:\n  a:\n    source: { x: {}, y: {} }\n    sinks: [ { y: {} } ]\n",
			want: `p.yaml:3: pipelines.a.source: must be a map with exactly one key, the component kind (e.g. kafka: {...})`,
		},
		{
			name: "wrong type",
			yaml: "pipelines:\n  a:\n    source: { x: {} }\n    sinks: [ { y: {} } ]\n    workers: many\n",
			want: "p.yaml:5: pipelines.a.workers: cannot unmarshal !!str `many` into int",
		},
		{
			name: "bad name",
			yaml: "pipelines:\n  A B:\n    source: { x: {} }\n    sinks: [ { y: {} } ]\n",
			want: "p.yaml:2: pipelines.A B: pipeline names use a-z, 0-9, _ and -",
		},
		{
			name: "not yaml",
			yaml: "pipelines: [\n",
			want: "p.yaml:1: did not find expected node content",
		},
		{
			name: "empty",
			yaml: "",
			want: "p.yaml: empty file: expected a map with a pipelines key",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestComponentDecodeAndWrap(t *testing.T) {
	yaml := "pipelines:\n  a:\n    source: { x: {} }\n    sinks:\n      - kafka:\n          topic: t\n          brokerz: [a]\n          batch: { size: nope }\n"
	f, err := Parse("p.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	type batch struct {
		Size int `yaml:"size"`
	}
	var cfg struct {
		Topic   string   `yaml:"topic"`
		Brokers []string `yaml:"brokers"`
		Batch   batch    `yaml:"batch"`
	}
	c := &f.Pipelines[0].Sinks[0]
	err = c.Decode(&cfg)
	want := `p.yaml:7: pipelines.a.sinks[0].kafka.brokerz: unknown field "brokerz" (valid: batch, brokers, topic)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	err = c.Wrap(Invalid("batch.size", "must be positive"))
	want = "p.yaml:8: pipelines.a.sinks[0].kafka.batch.size: must be positive"
	if err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}
