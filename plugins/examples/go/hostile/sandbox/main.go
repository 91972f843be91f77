// Command sandbox is a test-only Sluice transform that probes the sandbox:
// each record's "probe" field names something a guest should not be able to
// do (or only with a grant), and the record comes back with the outcome in
// "result", or fails with the error.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"time"

	sluice "github.com/sluicehq/sluice/plugins/sdk/go"
)

var hoard [][]byte

func init() {
	sluice.Map(func(r *sluice.Record) error {
		probe, _ := r.GetString("probe")
		var result string
		switch probe {
		case "file":
			f, err := os.Open("/etc/passwd")
			if err != nil {
				return err
			}
			f.Close()
			result = "opened /etc/passwd"
		case "write":
			if err := os.WriteFile("/tmp/sluice-sandbox-probe", []byte("x"), 0o644); err != nil {
				return err
			}
			result = "wrote /tmp/sluice-sandbox-probe"
		case "socket": // Go's net on wasip1 dials through WASI sockets, which Sluice never grants
			addr, _ := r.GetString("addr")
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			c.Close()
			result = "connected"
		case "env":
			result = strings.Join(os.Environ(), ",")
		case "clock":
			result = time.Now().UTC().Format(time.RFC3339)
		case "random":
			b := make([]byte, 8)
			rand.Read(b)
			result = hex.EncodeToString(b)
		case "alloc": // grows the heap by "mb" MiB, 1 MiB at a time
			mb, _ := r.GetInt("mb")
			for range mb {
				hoard = append(hoard, make([]byte, 1<<20))
			}
			result = "allocated"
		case "print":
			os.Stdout.WriteString("to stdout\n")
			os.Stderr.WriteString("to stderr\n")
		case "spin": // a loop that never ends, with no call in it
			n := 0
			for n >= 0 {
				n = (n + 1) & 0x3fffffff
			}
			result = "unreachable"
		case "panic":
			panic("boom")
		case "exit":
			os.Exit(3)
		}
		r.Set("result", sluice.String(result))
		return nil
	})
}

func main() {}
