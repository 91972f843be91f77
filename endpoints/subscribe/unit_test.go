package subscribe

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/pipeline"
)

func TestValidate(t *testing.T) {
	valid := func() Config {
		return Config{Listen: "127.0.0.1:8080", Brokers: []string{"127.0.0.1:9092"}, Topics: []string{"telemetry"}}
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" when valid
	}{
		{name: "minimal", edit: func(*Config) {}},
		{name: "no listen", edit: func(c *Config) { c.Listen = "" }, field: "listen"},
		{name: "relative path", edit: func(c *Config) { c.Path = "subscribe" }, field: "path"},
		{name: "no brokers", edit: func(c *Config) { c.Brokers = nil }, field: "brokers"},
		{name: "broker without port", edit: func(c *Config) { c.Brokers = []string{"kafka"} }, field: "brokers"},
		{name: "no topics", edit: func(c *Config) { c.Topics = nil }, field: "topics"},
		{name: "bad topic", edit: func(c *Config) { c.Topics = []string{"a b"} }, field: "topics"},
		{name: "topic twice", edit: func(c *Config) { c.Topics = []string{"a", "a"} }, field: "topics"},
		{name: "negative buffer", edit: func(c *Config) { c.Buffer = -1 }, field: "buffer"},
		{name: "unknown policy", edit: func(c *Config) { c.Slow = "drop" }, field: "slow"},
		{name: "skip policy", edit: func(c *Config) { c.Slow = "skip" }},
		{name: "ui relative", edit: func(c *Config) { c.UI = "ui" }, field: "ui"},
		{name: "ui root", edit: func(c *Config) { c.UI = "/" }, field: "ui"},
		{name: "ui same as path", edit: func(c *Config) { c.UI = "/subscribe" }, field: "ui"},
		{name: "ui trailing slash", edit: func(c *Config) { c.UI = "/ui/" }},
		{name: "negative heartbeat", edit: func(c *Config) { c.Heartbeat = -time.Second }, field: "heartbeat"},
		{name: "negative write timeout", edit: func(c *Config) { c.WriteTimeout = -time.Second }, field: "write_timeout"},
		{name: "negative send buffer", edit: func(c *Config) { c.SendBuffer = -1 }, field: "send_buffer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			var fe *pipeline.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.field != "" && !errors.As(err, &fe):
				t.Fatalf("got %v, want a field error on %s", err, tc.field)
			case tc.field != "" && fe.Field != tc.field:
				t.Fatalf("field: got %s, want %s (%v)", fe.Field, tc.field, err)
			}
		})
	}
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Path != "/subscribe" || c.Buffer != 1024 || c.Slow != "disconnect" || c.Heartbeat != 5*time.Second ||
		c.WriteTimeout != 10*time.Second || c.DeviceField != "device_id" || c.SeqField != "seq" {
		t.Fatalf("defaults: got %+v", c)
	}
}

func TestPosition(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []int64
		err  string
	}{
		{name: "four partitions", text: "0:1523,1:1490,2:1611,3:1502", want: []int64{1523, 1490, 1611, 1502}},
		{name: "any order", text: "2:5,0:7", want: []int64{7, unset, 5}},
		{name: "one", text: "0:0", want: []int64{0}},
		{name: "empty", text: "", err: "empty position"},
		{name: "no colon", text: "0-5", err: "want <partition>:<offset>"},
		{name: "negative offset", text: "0:-1", err: "bad offset"},
		{name: "bad partition", text: "x:1", err: "bad partition"},
		{name: "huge partition", text: "99999999:1", err: "bad partition"},
		{name: "twice", text: "0:1,0:2", err: "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePosition(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			back, _ := parsePosition(formatPosition(got))
			if !slices.Equal(back, got) {
				t.Fatalf("round trip: %q gives %v", formatPosition(got), back)
			}
		})
	}
	if got := formatPosition([]int64{unset, 4, unset, 9}); got != "1:4,3:9" {
		t.Fatalf("unset partitions: got %q", got)
	}
}

func TestParseFrom(t *testing.T) {
	tests := []struct {
		name string
		from string
		kind string
		err  string
	}{
		{name: "default", from: "", kind: "latest"},
		{name: "latest", from: "latest", kind: "latest"},
		{name: "earliest", from: "earliest", kind: "earliest"},
		{name: "position", from: "0:5,1:6", kind: "pos"},
		{name: "time", from: "time:2026-11-26T10:00:00Z", kind: "time"},
		{name: "time with fraction and zone", from: "time:2026-11-26T10:00:00.5+01:00", kind: "time"},
		{name: "bad time", from: "time:yesterday", err: "want time:<RFC3339>"},
		{name: "nonsense", from: "soon", err: "want latest, earliest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFrom(tc.from)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got.kind != tc.kind {
				t.Fatalf("got %+v, %v; want kind %s", got, err, tc.kind)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	r := &record{key: []byte("k1"), device: "d1", json: true,
		value: []byte(`{"device_id":"d1","kind":"alert","level":3,"ok":true,"site":{"id":7},"tags":["a"],"none":null}`)}
	tests := []struct {
		name  string
		query string
		want  bool
	}{
		{name: "no filter", query: "", want: true},
		{name: "device in set", query: "device_id=d0,d1", want: true},
		{name: "device not in set", query: "device_id=d2,d3", want: false},
		{name: "device repeated", query: "device_id=d2&device_id=d1", want: true},
		{name: "key", query: "key=k1", want: true},
		{name: "other key", query: "key=k2", want: false},
		{name: "where string", query: "where=kind%3Dalert", want: true},
		{name: "where string differs", query: "where=kind%3Dinfo", want: false},
		{name: "where number", query: "where=level%3D3", want: true},
		{name: "where number written differently", query: "where=level%3D3.0", want: true},
		{name: "where nested", query: "where=site.id%3D7", want: true},
		{name: "where bool", query: "where=ok%3Dtrue", want: true},
		{name: "where null", query: "where=none%3Dnull", want: true},
		{name: "where missing field", query: "where=nothere%3Dnull", want: false},
		{name: "where value with =", query: "where=kind%3Da%3Db", want: false},
		{name: "all must hold", query: "device_id=d1&where=kind%3Dalert&where=level%3D4", want: false},
		{name: "all hold", query: "device_id=d1&key=k1&where=kind%3Dalert&where=level%3D3", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			f, err := parseFilter(q)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.match(r); got != tc.want {
				t.Fatalf("match: got %v, want %v", got, tc.want)
			}
		})
	}
	notJSON := &record{value: []byte("plain text")}
	q, _ := url.ParseQuery("where=kind%3Dalert")
	f, _ := parseFilter(q)
	if f.match(notJSON) {
		t.Fatal("a where filter matched a value that is not JSON")
	}
}

func TestNewRecordIdentity(t *testing.T) {
	tests := []struct {
		name    string
		msg     kafka.Message
		device  string
		seq     uint64
		hasSeq  bool
		idPart  uint32
		isJSON  bool
		encoded string
	}{
		{
			name:    "sluice-id header",
			msg:     kafka.Message{Partition: 2, Offset: 9, Key: []byte("a/b"), Value: []byte(`{"x":1}`), Headers: []kafka.Header{{Key: IDHeader, Value: []byte("a/b/42/3")}}},
			device:  "a/b",
			seq:     42,
			hasSeq:  true,
			idPart:  3,
			isJSON:  true,
			encoded: `{"pos":"0:1,2:10","partition":2,"offset":9,"key":"a/b","device_id":"a/b","seq":42,"part":3,"value":{"x":1}}`,
		},
		{
			name:    "fields of the value",
			msg:     kafka.Message{Value: []byte(`{"device_id":"d7","seq":5}`)},
			device:  "d7",
			seq:     5,
			hasSeq:  true,
			isJSON:  true,
			encoded: `{"pos":"0:1","partition":0,"offset":0,"device_id":"d7","seq":5,"value":{"device_id":"d7","seq":5}}`,
		},
		{
			name:    "not JSON",
			msg:     kafka.Message{Value: []byte("hi \"there\"\n\xff")},
			encoded: `{"pos":"0:1","partition":0,"offset":0,"value":"hi \"there\"\n\ufffd"}`,
		},
		{
			name:    "bad header falls back to the value",
			msg:     kafka.Message{Value: []byte(`{"device_id":"d8","seq":-1}`), Headers: []kafka.Header{{Key: IDHeader, Value: []byte("nonsense")}}},
			device:  "d8",
			isJSON:  true,
			encoded: `{"pos":"0:1","partition":0,"offset":0,"device_id":"d8","value":{"device_id":"d8","seq":-1}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecord(&tc.msg, 0, "device_id", "seq")
			if r.device != tc.device || r.seq != tc.seq || r.hasSeq != tc.hasSeq || r.idPart != tc.idPart || r.json != tc.isJSON {
				t.Fatalf("got device %q seq %d (%v) part %d json %v", r.device, r.seq, r.hasSeq, r.idPart, r.json)
			}
			s := &subscriber{next: []int64{1, unset, 10}}
			if r.part != 2 {
				s.next = []int64{1}
			}
			got := string(s.encode(nil, r))
			if got != tc.encoded {
				t.Fatalf("frame: got %s, want %s", got, tc.encoded)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("frame is not JSON: %s", got)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "tab\tnl\ncr\r\x00\x1f", "héllo ✓", "bad \xff\xfe utf8", "\u2028"} {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q: %s is not a JSON string: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if !utf8.ValidString(s) {
			want = strings.Map(func(r rune) rune { return r }, s) // each bad byte becomes U+FFFD
		}
		if back != want {
			t.Fatalf("%q: decodes to %q, want %q", s, back, want)
		}
	}
}

func TestReason(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := reason(long)
	if len(got) > 123 || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Fatalf("got %d bytes %q", len(got), got)
	}
	if reason("short") != "short" {
		t.Fatal("a short reason was changed")
	}
}
