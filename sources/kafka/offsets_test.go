package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// op is one step of an offsets scenario:
//
//	"t p0 5"   track offset 5 of partition 0 (the ref is named by its order, from 0)
//	"s 3"      settle the 4th tracked message
//	"u 3 4"    untrack the 4th and 5th tracked messages
//	"take"     take the pending offsets (then "ok" or "fail")
//	"ok"/"fail" report the outcome of the last take
type scenario struct {
	name string
	ops  []string
	// pending after the ops, as "p0=6 p1=3" (sorted), before any take
	want string
	// committed after the ops
	committed string
	// unsettled after the ops
	unsettled int
	// notifies is how many times the commit was signalled
	notifies int
}

func TestOffsets(t *testing.T) {
	tests := []scenario{
		{name: "nothing", ops: nil, want: "", unsettled: 0},
		{name: "tracked, not settled", ops: []string{"t p0 0", "t p0 1"}, want: "", unsettled: 2},
		{name: "in order", ops: []string{"t p0 0", "t p0 1", "t p0 2", "s 0", "s 1", "s 2"},
			want: "p0=3", notifies: 3},
		{name: "out of order does not pass a hole",
			ops:  []string{"t p0 0", "t p0 1", "t p0 2", "t p0 3", "s 3", "s 2", "s 0"},
			want: "p0=1", unsettled: 1, notifies: 1},
		{name: "hole filled jumps ahead",
			ops:  []string{"t p0 0", "t p0 1", "t p0 2", "t p0 3", "s 3", "s 2", "s 0", "s 1"},
			want: "p0=4", notifies: 2},
		{name: "reverse order", ops: []string{"t p0 10", "t p0 11", "t p0 12", "s 2", "s 1", "s 0"},
			want: "p0=13", notifies: 1},
		{name: "offset gaps (compaction, transaction markers)",
			ops:  []string{"t p0 3", "t p0 7", "t p0 20", "s 0", "s 1"},
			want: "p0=8", unsettled: 1, notifies: 2},
		{name: "partitions are independent",
			ops:  []string{"t p0 0", "t p1 0", "t p0 1", "t p1 1", "s 1", "s 3", "s 2"},
			want: "p1=2", unsettled: 1, notifies: 2},
		{name: "first unsettled holds only its partition",
			ops:  []string{"t p0 0", "t p1 5", "t p0 1", "s 1", "s 2"},
			want: "p1=6", unsettled: 1, notifies: 1},
		{name: "new epoch after a rebalance: the old epoch still settles, commits never go back",
			// p0 fetched 0..3; the partition comes back from 1 (not committed);
			// the old epoch settles up to 4, the new one up to 3: 4 stays.
			ops:  []string{"t p0 0", "t p0 1", "t p0 2", "t p0 3", "t p0 1", "t p0 2", "s 0", "s 1", "s 2", "s 3", "s 4", "s 5"},
			want: "p0=4", notifies: 4},
		{name: "new epoch commits beyond the old one",
			ops:  []string{"t p0 0", "t p0 1", "t p0 0", "t p0 1", "t p0 2", "s 2", "s 3", "s 4"},
			want: "p0=3", unsettled: 2, notifies: 3},
		{name: "commit taken and confirmed",
			ops:  []string{"t p0 0", "t p0 1", "s 0", "take", "ok", "s 1"},
			want: "p0=2", committed: "p0=1", notifies: 2},
		{name: "failed commit is pending again",
			ops:  []string{"t p0 0", "t p0 1", "s 0", "take", "fail"},
			want: "p0=1", unsettled: 1, notifies: 1},
		{name: "failed commit replaced by a later offset",
			ops:  []string{"t p0 0", "t p0 1", "s 0", "take", "s 1", "fail"},
			want: "p0=2", notifies: 2},
		{name: "nothing below the committed offset is pending",
			ops:  []string{"t p0 0", "t p0 1", "s 0", "s 1", "take", "ok", "t p0 0", "s 2"},
			want: "", committed: "p0=2", notifies: 2},
		{name: "untracked tail frees its hold",
			ops:  []string{"t p0 0", "t p0 1", "t p0 2", "u 1 2", "s 0"},
			want: "p0=1", notifies: 1},
		{name: "fetching resumes after untrack",
			ops:  []string{"t p0 0", "t p0 1", "u 1", "t p0 1", "s 0", "s 2"},
			want: "p0=2", notifies: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notifies := 0
			o := newOffsets(func() { notifies++ })
			var refs []ref
			var taken map[topicPartition]int64
			for _, op := range tt.ops {
				f := strings.Fields(op)
				switch f[0] {
				case "t":
					var p int
					var off int64
					fmt.Sscanf(f[1], "p%d", &p)
					fmt.Sscan(f[2], &off)
					refs = append(refs, o.track("topic", p, off))
				case "s":
					var i int
					fmt.Sscan(f[1], &i)
					o.settle(refs[i])
				case "u":
					var rs []ref
					for _, a := range f[1:] {
						var i int
						fmt.Sscan(a, &i)
						rs = append(rs, refs[i])
					}
					o.untrack(rs)
				case "take":
					taken = o.take()
				case "ok":
					o.done(taken, nil)
				case "fail":
					o.done(taken, errors.New("rebalance in progress"))
				default:
					t.Fatalf("bad op %q", op)
				}
			}
			if got := format(o.pending); got != tt.want {
				t.Fatalf("pending: got %q, want %q", got, tt.want)
			}
			if got := format(o.committed); got != tt.committed {
				t.Fatalf("committed: got %q, want %q", got, tt.committed)
			}
			if got := o.unsettled(); got != tt.unsettled {
				t.Fatalf("unsettled: got %d, want %d", got, tt.unsettled)
			}
			if notifies != tt.notifies {
				t.Fatalf("notifies: got %d, want %d", notifies, tt.notifies)
			}
		})
	}
}

func format(m map[topicPartition]int64) string {
	var parts []string
	for _, tp := range slices.SortedFunc(maps.Keys(m), func(a, b topicPartition) int { return a.partition - b.partition }) {
		parts = append(parts, fmt.Sprintf("p%d=%d", tp.partition, m[tp]))
	}
	return strings.Join(parts, " ")
}

func TestOffsetsWaitIdle(t *testing.T) {
	o := newOffsets(nil)
	r1 := o.track("t", 0, 0)
	r2 := o.track("t", 0, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.waitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitIdle with unsettled records: got %v, want DeadlineExceeded", err)
	}

	done := make(chan error, 1)
	go func() { done <- o.waitIdle(context.Background()) }()
	o.settle(r2)
	select {
	case err := <-done:
		t.Fatalf("waitIdle returned %v with one record unsettled", err)
	case <-time.After(20 * time.Millisecond):
	}
	o.settle(r1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitIdle: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("waitIdle did not return after every record was settled")
	}
}

// TestOffsetsConcurrent settles from many goroutines in random order and
// checks the final offsets (run with -race).
func TestOffsetsConcurrent(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	o := newOffsets(func() { mu.Lock(); seen++; mu.Unlock() })
	const parts, n = 4, 2000
	var refs []ref
	for i := range n {
		refs = append(refs, o.track("t", i%parts, int64(i/parts)))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := len(refs) - 1 - w; i >= 0; i -= 8 {
				o.settle(refs[i])
			}
		}()
	}
	wg.Wait()
	if got, want := format(o.pending), "p0=500 p1=500 p2=500 p3=500"; got != want {
		t.Fatalf("pending: got %q, want %q", got, want)
	}
	if o.unsettled() != 0 {
		t.Fatalf("unsettled: got %d, want 0", o.unsettled())
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" when not an ID
	}{
		{name: "plain", in: "dev1/42/3", want: "dev1|42|3"},
		{name: "device with slashes", in: "site/a/b/7/0", want: "site/a/b|7|0"},
		{name: "empty device", in: "/1/0", want: "|1|0"},
		{name: "missing part", in: "dev/1", want: ""},
		{name: "bad seq", in: "dev/x/1", want: ""},
		{name: "bad part", in: "dev/1/-1", want: ""},
		{name: "part overflow", in: "dev/1/4294967296", want: ""},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := ParseID([]byte(tt.in))
			got := ""
			if ok {
				got = fmt.Sprintf("%s|%d|%d", id.Device, id.Seq, id.Part)
			}
			if got != tt.want {
				t.Fatalf("ParseID(%q): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
