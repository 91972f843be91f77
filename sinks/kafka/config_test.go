package kafka

import (
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/pipeline"
)

func TestValidate(t *testing.T) {
	no := false
	tests := []struct {
		name  string
		cfg   Config
		field string // "" when valid
		check func(t *testing.T, c Config)
	}{
		{name: "defaults", cfg: Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "telemetry"},
			check: func(t *testing.T, c Config) {
				if c.BatchSize != 1000 || c.Linger != 5*time.Millisecond || c.Compression != "none" ||
					c.Partitions != 4 || c.ReplicationFactor != 1 || c.WriteTimeout != 10*time.Second ||
					!*c.Headers || c.MaxMessageBytes != 1<<20 || c.CreateTopic {
					t.Fatalf("defaults: got %+v", c)
				}
			}},
		{name: "explicit", cfg: Config{Brokers: []string{"k:1"}, Topic: "a.b_c-1", BatchSize: 10, Linger: time.Second,
			Compression: "ZSTD", Headers: &no, Key: "{{a}}"},
			check: func(t *testing.T, c Config) {
				if c.BatchSize != 10 || c.Linger != time.Second || c.Compression != "zstd" || *c.Headers {
					t.Fatalf("explicit: got %+v", c)
				}
			}},
		{name: "no brokers", cfg: Config{Topic: "t"}, field: "brokers"},
		{name: "broker without port", cfg: Config{Brokers: []string{"localhost"}, Topic: "t"}, field: "brokers"},
		{name: "no topic", cfg: Config{Brokers: []string{"k:1"}}, field: "topic"},
		{name: "bad topic", cfg: Config{Brokers: []string{"k:1"}, Topic: "a b"}, field: "topic"},
		{name: "bad key", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Key: "{{a"}, field: "key"},
		{name: "empty key field", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Key: "x{{}}"}, field: "key"},
		{name: "negative batch", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", BatchSize: -1}, field: "batch_size"},
		{name: "negative linger", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Linger: -1}, field: "linger"},
		{name: "bad compression", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Compression: "brotli"}, field: "compression"},
		{name: "negative partitions", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Partitions: -2}, field: "partitions"},
		{name: "tiny max message", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", MaxMessageBytes: 10}, field: "max_message_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				tt.check(t, c)
				return
			}
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: got %v, want a *pipeline.FieldError", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("Validate: field got %q, want %q (%v)", fe.Field, tt.field, err)
			}
		})
	}
}

func TestKeyTemplate(t *testing.T) {
	doc := []byte(`{"device_id":"d-7","site":"lyon","n":42,"f":1.50,"ok":true,"nil":null,"o":{"a":[1,2]},"empty":""}`)
	tests := []struct {
		name string
		tmpl string
		want string // "<nil>" for no key
	}{
		{name: "none", tmpl: "", want: "<nil>"},
		{name: "one field", tmpl: "{{device_id}}", want: "d-7"},
		{name: "two fields", tmpl: "{{device_id}}-{{site}}", want: "d-7-lyon"},
		{name: "literal around", tmpl: "k:{{ device_id }}/", want: "k:d-7/"},
		{name: "number as written", tmpl: "{{n}}.{{f}}", want: "42.1.50"},
		{name: "bool and null", tmpl: "{{ok}}{{nil}}", want: "truenull"},
		{name: "nested path", tmpl: "{{o.a.1}}", want: "2"},
		{name: "object raw", tmpl: "{{o}}", want: `{"a":[1,2]}`},
		{name: "missing single", tmpl: "{{nope}}", want: "<nil>"},
		{name: "empty string", tmpl: "{{empty}}", want: "<nil>"},
		{name: "missing in pair", tmpl: "{{device_id}}-{{nope}}", want: "d-7-"},
		{name: "all missing", tmpl: "{{nope}}-{{nada}}", want: "<nil>"},
		{name: "literal only", tmpl: "fixed", want: "fixed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := parseKey(tt.tmpl)
			if err != nil {
				t.Fatalf("parseKey(%q): %v", tt.tmpl, err)
			}
			got := k.render(doc)
			gs := string(got)
			if got == nil {
				gs = "<nil>"
			}
			if gs != tt.want {
				t.Fatalf("render %q: got %q, want %q", tt.tmpl, gs, tt.want)
			}
		})
	}
}

func TestKeyTemplateErrors(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
	}{
		{name: "unclosed", tmpl: "{{a"},
		{name: "unopened", tmpl: "a}}"},
		{name: "empty", tmpl: "{{ }}"},
		{name: "nested", tmpl: "{{a{{b}}"},
		{name: "close before open", tmpl: "}}{{a}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseKey(tt.tmpl); err == nil {
				t.Fatalf("parseKey(%q): got nil error, want one", tt.tmpl)
			}
		})
	}
}

// TestBalancerJavaCompatible checks keyed partitioning against the Java
// client's murmur2 (values from Kafka's UtilsTest.testMurmur2):
// partition = (murmur2(key) & 0x7fffffff) % partitions.
func TestBalancerJavaCompatible(t *testing.T) {
	tests := []struct {
		name string
		key  string
		hash int32
	}{
		{name: "21", key: "21", hash: -973932308},
		{name: "foobar", key: "foobar", hash: -790332482},
		{name: "long", key: "a-little-bit-long-string", hash: -985981536},
		{name: "longer", key: "a-little-bit-longer-string", hash: -1486304829},
		{name: "random", key: "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", hash: -58897971},
		{name: "abc", key: "abc", hash: 479470107},
	}
	b := &balancer{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{1, 3, 4, 7, 12} {
				parts := make([]int, n)
				for i := range parts {
					parts[i] = i
				}
				want := int((uint32(tt.hash) & 0x7fffffff) % uint32(n))
				got := b.Balance(kafkago.Message{Key: []byte(tt.key)}, parts...)
				if got != want {
					t.Fatalf("key %q over %d partitions: got %d, want %d", tt.key, n, got, want)
				}
			}
		})
	}
}

func TestBalancerKeylessRoundRobin(t *testing.T) {
	b := &balancer{}
	counts := map[int]int{}
	for range 400 {
		counts[b.Balance(kafkago.Message{}, 0, 1, 2, 3)]++
	}
	for p := range 4 {
		if counts[p] != 100 {
			t.Fatalf("partition %d: got %d keyless messages, want 100 (%v)", p, counts[p], counts)
		}
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name        string
		headers     bool
		rec         pipeline.Record
		wantKey     string
		wantTopic   string
		wantHeaders string
	}{
		{name: "template key and id", headers: true,
			rec:     pipeline.Record{Value: []byte(`{"device_id":"d1"}`), ID: pipeline.ID{Device: "d1", Seq: 7, Part: 2}},
			wantKey: "d1", wantTopic: "t", wantHeaders: "sluice-id=d1/7/2"},
		{name: "record key wins", headers: true,
			rec:     pipeline.Record{Value: []byte(`{"device_id":"d1"}`), Key: []byte("k")},
			wantKey: "k", wantTopic: "t", wantHeaders: ""},
		{name: "dest and headers copied", headers: true,
			rec: pipeline.Record{Value: []byte(`{}`), Dest: "other",
				Headers: []pipeline.Header{{Key: "a", Value: []byte("1")}, {Key: "sluice-id", Value: []byte("old/1/0")}},
				ID:      pipeline.ID{Device: "x/y", Seq: 1}},
			wantKey: "", wantTopic: "other", wantHeaders: "a=1,sluice-id=x/y/1/0"},
		{name: "headers off keeps identity", headers: false,
			rec:     pipeline.Record{Value: []byte(`{}`), Headers: []pipeline.Header{{Key: "a", Value: []byte("1")}}, ID: pipeline.ID{Seq: 3}},
			wantKey: "", wantTopic: "t", wantHeaders: "sluice-id=/3/0"},
		{name: "no id keeps upstream identity", headers: true,
			rec:     pipeline.Record{Value: []byte(`{}`), Headers: []pipeline.Header{{Key: "sluice-id", Value: []byte("d/1/0")}}},
			wantKey: "", wantTopic: "t", wantHeaders: "sluice-id=d/1/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Brokers: []string{"k:1"}, Topic: "t", Key: "{{device_id}}", Headers: &tt.headers}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			s := &Sink{cfg: cfg, headers: tt.headers}
			m := s.message(&tt.rec)
			if string(m.Key) != tt.wantKey {
				t.Fatalf("key: got %q, want %q", m.Key, tt.wantKey)
			}
			if m.Topic != tt.wantTopic {
				t.Fatalf("topic: got %q, want %q", m.Topic, tt.wantTopic)
			}
			var hs []string
			for _, h := range m.Headers {
				hs = append(hs, h.Key+"="+string(h.Value))
			}
			if got := strings.Join(hs, ","); got != tt.wantHeaders {
				t.Fatalf("headers: got %q, want %q", got, tt.wantHeaders)
			}
		})
	}
}
