package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

// TestEndToEnd runs the whole path: 20 devices push records over WebSocket
// into an ingest pipeline whose Kafka sink keys them by device; 200
// subscribers on the same HTTP server, with a mix of filters, receive
// exactly the records meant for them, in per-device order; 20 of them
// disconnect half way and resume from their last position.
func TestEndToEnd(t *testing.T) {
	const (
		devices     = 20
		perDevice   = 25
		subscribers = 200
		resumers    = 20
	)
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("subscribe_e2e")
	testenv.CreateTopic(t, brokers, topic, 4)

	log := quietLog()
	servers := pipeline.NewServers(log)
	reg := prometheus.NewRegistry()
	env := pipeline.Env{Logger: log, HTTP: servers, Metrics: reg}
	const listen = "127.0.0.1:0" // the source and the endpoint share it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	src, err := wssource.New(ctx, wssource.Config{Listen: listen, Window: 64}, env)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := kafkasink.New(ctx, kafkasink.Config{Brokers: brokers, Topic: topic, Key: "{{device_id}}"}, env)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Pipeline{Name: "ingest", Source: src, Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "sinks[0].kafka", C: sink}}, Logger: log}
	ep, err := New(ctx, Config{Listen: listen, Brokers: brokers, Topics: []string{topic}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = p.Run(ctx) }()
	go func() { defer wg.Done(); _ = ep.Run(ctx) }()
	defer func() {
		cancel()
		wg.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = ep.Close(cctx)
		_ = servers.Shutdown(cctx)
	}()
	addr := servers.Addr(listen).String()
	h := &harness{e: ep, url: "ws://" + addr + "/subscribe", topic: topic, brokers: brokers, metrics: reg}
	if err := ep.hubs[topic].waitReady(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// What the devices will send.
	var recs []rec
	for d := range devices {
		for i := 1; i <= perDevice; i++ {
			kind := "reading"
			if i%4 == 0 {
				kind = "alert"
			}
			recs = append(recs, rec{Device: fmt.Sprintf("dev-%02d", d), Seq: uint64(i), Kind: kind})
		}
	}
	type filterCase struct {
		query string
		keep  func(rec) bool
	}
	filterOf := func(i int) filterCase {
		d := func(n int) string { return fmt.Sprintf("dev-%02d", n%devices) }
		switch i % 4 {
		case 1:
			a, b, c := d(i), d(i+7), d(i+13)
			return filterCase{"device_id=" + a + "," + b + "," + c, func(r rec) bool { return r.Device == a || r.Device == b || r.Device == c }}
		case 2:
			k := d(i)
			return filterCase{"key=" + k, func(r rec) bool { return r.Device == k }}
		case 3:
			return filterCase{"where=" + url.QueryEscape("kind=alert"), func(r rec) bool { return r.Kind == "alert" }}
		}
		return filterCase{"", func(rec) bool { return true }}
	}

	// Subscribe everyone before the devices start.
	began := time.Now()
	subs := subscribeMany(t, h, subscribers, func(i int) string { return "from=latest&" + filterOf(i).query })
	t.Logf("%d subscribers connected in %v", subscribers, time.Since(began))
	began = time.Now()
	var resumed, dups atomic.Int64
	results := make([]error, subscribers)
	var subWG sync.WaitGroup
	for i := range subscribers {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			fc := filterOf(i)
			want := expect(recs, fc.keep)
			n := count(want)
			rctx, rcancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer rcancel()
			s := subs[i]
			var got []msg
			seen := map[string]bool{}
			resumeAt := -1
			if i%(subscribers/resumers) == 0 {
				resumeAt = n / 2
			}
			for len(got) < n {
				if len(got) == resumeAt {
					resumeAt = -1
					pos := s.pos
					_ = s.c.Close(websocket.StatusNormalClosure, "")
					ns, err := trySubscribe(h, "from="+url.QueryEscape(pos)+"&"+fc.query, nil)
					if err != nil {
						results[i] = fmt.Errorf("resume from %s: %v", pos, err)
						return
					}
					defer ns.c.CloseNow()
					s = ns
					resumed.Add(1)
				}
				m, err := s.read(rctx)
				if err != nil {
					results[i] = fmt.Errorf("after %d of %d records: %v", len(got), n, err)
					return
				}
				if m.Type != "" {
					continue
				}
				id := fmt.Sprintf("%s/%d", m.Device, m.Seq)
				if seen[id] { // a duplicate is recognisable by its identity
					dups.Add(1)
					continue
				}
				seen[id] = true
				got = append(got, m)
			}
			if err := sameRecords(byDevice(got), want); err != nil {
				results[i] = err
			}
		}()
	}

	// The devices push, each on its own connection, paced so that the
	// resumers disconnect while records still flow.
	var devWG sync.WaitGroup
	for d := range devices {
		devWG.Add(1)
		go func() {
			defer devWG.Done()
			if err := pushDevice(ctx, "ws://"+addr+"/ingest", recs[d*perDevice:(d+1)*perDevice], 20*time.Millisecond); err != nil {
				t.Errorf("device %d: %v", d, err)
			}
		}()
	}
	devWG.Wait()
	t.Logf("devices done in %v", time.Since(began))
	subWG.Wait()
	t.Logf("subscribers done in %v", time.Since(began))
	failed := 0
	for i, err := range results {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("subscriber %d (%q): %v", i, filterOf(i).query, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d subscribers did not get exactly their records", failed, subscribers)
	}
	if got := resumed.Load(); got != resumers {
		t.Fatalf("resumed: got %d subscribers, want %d", got, resumers)
	}
	t.Logf("%d subscribers got exactly their records in per-device order; %d resumed mid-stream; %d duplicates seen", subscribers, resumers, dups.Load())
}

// pushDevice sends recs on one device connection, one every interval, and
// waits until all are acknowledged.
func pushDevice(ctx context.Context, u string, recs []rec, interval time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, u, nil)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	errc := make(chan error, 1)
	go func() {
		for _, r := range recs {
			b, _ := json.Marshal(r)
			if err := c.Write(dctx, websocket.MessageText, b); err != nil {
				errc <- err
				return
			}
			time.Sleep(interval)
		}
		errc <- nil
	}()
	for {
		_, data, err := c.Read(dctx)
		if err != nil {
			return fmt.Errorf("waiting for acks: %w", err)
		}
		var reply struct {
			Ack   int    `json:"ack"`
			Nack  int    `json:"nack"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(data, &reply); err != nil {
			return err
		}
		if reply.Nack > 0 {
			return fmt.Errorf("record %d nacked: %s", reply.Nack, reply.Error)
		}
		if reply.Ack == len(recs) {
			if err := <-errc; err != nil && !strings.Contains(err.Error(), "closed") {
				return err
			}
			return nil
		}
	}
}
