package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

func batch(values ...string) pipeline.Batch {
	b := make(pipeline.Batch, len(values))
	for i, v := range values {
		b[i].Value = []byte(v)
	}
	return b
}

// A crash can leave the last line of a file cut short (a batch takes
// several writes, and is acknowledged only after all of them): the sink
// cuts it off when it opens the file, so the batch sent again starts on a
// line of its own.
func TestTornLineCut(t *testing.T) {
	for _, tc := range []struct{ before, want string }{
		{`{"a":1}` + "\n" + `{"b":`, `{"a":1}` + "\n"},
		{`{"b":`, ``},
		{`{"a":1}` + "\n", `{"a":1}` + "\n"},
		{``, ``},
		{strings.Repeat(`{"a":1}`+"\n", 1000) + strings.Repeat("x", 5000), strings.Repeat(`{"a":1}`+"\n", 1000)},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.jsonl")
		if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := New(context.Background(), Config{Path: "out.jsonl"}, pipeline.Env{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), batch(`{"c":3}`)); err != nil {
			t.Fatal(err)
		}
		size := s.size // where a failed batch would be cut back to
		s.Close(context.Background())
		got, _ := os.ReadFile(path)
		if size != int64(len(got)) {
			t.Errorf("before %.40q: the sink counts %d bytes, the file has %d", tc.before, size, len(got))
		}
		if want := tc.want + `{"c":3}` + "\n"; string(got) != want {
			t.Errorf("before %.40q: got %.60q, want %.60q", tc.before, got, want)
		}
	}
}

// flaky fails its first write after n bytes, then works.
type flaky struct {
	n    int
	done bool
	got  []byte
}

func (f *flaky) Write(p []byte) (int, error) {
	if !f.done {
		f.done = true
		k := min(f.n, len(p))
		f.got = append(f.got, p[:k]...)
		return k, errors.New("disk full")
	}
	f.got = append(f.got, p...)
	return len(p), nil
}

// A failed write fails the batch, and the next one (the retry) goes
// through: the sink does not stay broken.
func TestWriteAfterFailure(t *testing.T) {
	w := &flaky{n: 3}
	s := NewWriter(w, false)
	if err := s.Write(context.Background(), batch(`{"a":1}`)); err == nil {
		t.Fatal("the failed write did not fail the batch")
	}
	if err := s.Write(context.Background(), batch(`{"a":1}`)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := string(w.got); !strings.HasSuffix(got, `{"a":1}`+"\n") {
		t.Errorf("wrote %q", got)
	}
}
