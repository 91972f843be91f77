package device_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sluicehq/sluice/device"
)

// A device that keeps its outbox on disk, so that readings queued while
// Sluice is unreachable survive a reboot and are sent once it is back.
func Example() {
	c, err := device.New("ws://127.0.0.1:8080/ingest", device.Options{
		DeviceID:  "dev-0001",
		OutboxDir: "/var/lib/sensor/outbox",
		OnNack: func(record []byte, err *device.NackError) {
			log.Printf("reading %d rejected: %s", err.Seq, err.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	for i := range 1000 {
		// Send returns at once; the record is sent, batched with others,
		// and resent after a reconnect until Sluice acknowledges it.
		rec := fmt.Appendf(nil, `{"ts":%q,"temp":%.1f}`, time.Now().Format(time.RFC3339Nano), 20+float64(i%50)/10)
		if _, err := c.Send(ctx, rec); err != nil {
			log.Fatal(err)
		}
	}
	// Wait until every reading is durable in Sluice's sinks (or nacked).
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		log.Printf("not all readings acknowledged yet: %v (they stay in the outbox)", err)
	}
	s := c.Stats()
	log.Printf("acked %d, nacked %d, resent %d", s.Acked, s.Nacked, s.Resent)
}
