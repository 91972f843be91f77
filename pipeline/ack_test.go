package pipeline

import (
	"errors"
	"sync"
	"testing"
)

func TestAck(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		add     int
		results []error
		want    error
	}{
		{name: "single delivery", results: []error{nil}},
		{name: "fan-out all ok", add: 2, results: []error{nil, nil, nil}},
		{name: "one failure wins", add: 2, results: []error{nil, boom, nil}, want: boom},
		{name: "first failure wins", add: 1, results: []error{boom, errors.New("later")}, want: boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var got error
			a := NewAck(func(err error) { calls++; got = err })
			a.Add(tc.add)
			for i, r := range tc.results {
				if calls != 0 {
					t.Fatalf("done called after %d of %d deliveries", i, len(tc.results))
				}
				a.Done(r)
			}
			if calls != 1 {
				t.Fatalf("done called %d times, want 1", calls)
			}
			if got != tc.want {
				t.Fatalf("done got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAckConcurrent(t *testing.T) {
	const n = 1000
	var calls int
	var mu sync.Mutex
	a := NewAck(func(error) { mu.Lock(); calls++; mu.Unlock() })
	a.Add(n - 1)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); a.Done(nil) }()
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("done called %d times, want 1", calls)
	}
}

func TestAckNilIsNoop(t *testing.T) {
	var a *Ack
	a.Add(3)
	a.Done(errors.New("ignored"))
}

func TestAckOverDonePanics(t *testing.T) {
	a := NewAck(nil)
	a.Done(nil)
	defer func() {
		if recover() == nil {
			t.Fatal("a second Done on a single delivery did not panic")
		}
	}()
	a.Done(nil)
}

func TestAckDoneNilDoesNotAllocate(t *testing.T) {
	a := NewAck(nil)
	a.Add(1000)
	if n := testing.AllocsPerRun(100, func() { a.Done(nil) }); n != 0 {
		t.Fatalf("Done(nil) allocates %v times per call, want 0", n)
	}
}
