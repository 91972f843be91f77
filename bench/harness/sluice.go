package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// PipelineYAML renders the benchmark's pipeline: the default
// pipeline.yaml's shape (WebSocket → WASM enrich → Kafka; Kafka →
// ClickHouse; subscriptions endpoint on the topic) on this run's topic,
// table and ports.
// Tuning holds non-default settings for experiments; the zero value is
// the default pipeline.
type Tuning struct {
	KafkaBatch    int    // sinks[0].kafka batch_size
	KafkaInFlight int    // sinks[0].kafka max_in_flight
	WASMTimeout   string // transforms[0].wasm timeout
	CHCompression string // store sinks[0].clickhouse compression
}

func (t Tuning) String() string {
	var s []string
	if t.KafkaBatch > 0 {
		s = append(s, fmt.Sprintf("kafka batch_size %d", t.KafkaBatch))
	}
	if t.KafkaInFlight > 0 {
		s = append(s, fmt.Sprintf("kafka max_in_flight %d", t.KafkaInFlight))
	}
	if t.WASMTimeout != "" {
		s = append(s, "wasm timeout "+t.WASMTimeout)
	}
	if t.CHCompression != "" {
		s = append(s, "clickhouse compression "+t.CHCompression)
	}
	return strings.Join(s, ", ")
}

func PipelineYAML(httpAddr, wsAddr, enrich string, brokers []string, chAddr, topic, dead, table, group string, tune Tuning) string {
	b := "[" + strings.Join(brokers, ", ") + "]"
	kafkaExtra, wasmExtra := "", ""
	if tune.KafkaBatch > 0 {
		kafkaExtra = fmt.Sprintf(", batch_size: %d", tune.KafkaBatch)
	}
	if tune.KafkaInFlight > 0 {
		kafkaExtra += fmt.Sprintf(", max_in_flight: %d", tune.KafkaInFlight)
	}
	if tune.WASMTimeout != "" {
		wasmExtra = "\n          timeout: " + tune.WASMTimeout
	}
	compression := "none" // the default pipeline's: its server is on the same host
	if tune.CHCompression != "" {
		compression = tune.CHCompression
	}
	return fmt.Sprintf(`# Written by bench/cmd/sluice-bench: the default pipeline.yaml's shape on
# this run's topic, table and ports.
http:
  listen: %[1]s
pipelines:
  ingest:
    source:
      websocket: { listen: %[2]s, path: /ingest }
    transforms:
      - wasm:
          module: %[3]s
          config: { site: lab-1 }%[10]s
    sinks:
      - kafka: { brokers: %[4]s, topic: %[5]s, key: "{{device_id}}"%[11]s }
    dead_letter:
      kafka: { brokers: %[4]s, topic: %[6]s }
  store:
    source:
      kafka: { brokers: %[4]s, topic: %[5]s, group: %[9]s }
    sinks:
      - clickhouse:
          addr: %[7]s
          table: %[8]s
          compression: %[12]s
          columns: { part: "@part", raw: "$" }
          create:
            engine: ReplacingMergeTree()
            order_by: [device_id, seq, part]
            columns:
              - { name: device_id, type: String }
              - { name: seq, type: UInt64 }
              - { name: part, type: UInt32 }
              - { name: ts, type: DateTime }
              - { name: kind, type: String }
              - { name: temp, type: Float64 }
              - { name: temp_f, type: Float64 }
              - { name: humidity, type: Float64 }
              - { name: pressure, type: Float64 }
              - { name: site, type: String }
              - { name: msg, type: String }
              - { name: raw, type: String }
    dead_letter:
      kafka: { brokers: %[4]s, topic: %[6]s }
endpoints:
  - subscriptions:
      listen: %[2]s
      path: /subscribe
      brokers: %[4]s
      topics: [%[5]s]
`, httpAddr, wsAddr, enrich, b, topic, dead, chAddr, table, group, wasmExtra, kafkaExtra, compression)
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Proc is a Sluice process.
type Proc struct {
	cmd  *exec.Cmd
	done chan error
	Log  string
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// StartProc starts bin with args, its output appended to logPath, and
// waits until http://healthAddr/healthz answers.
func StartProc(ctx context.Context, bin string, args []string, logPath, healthAddr string) (*Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan error, 1), Log: logPath}
	go func() { p.done <- cmd.Wait(); lf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + healthAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s exited during startup (%v); see %s:\n%s", bin, err, logPath, tail(logPath, 15))
		case <-ctx.Done():
			p.Stop(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop(5 * time.Second)
			return nil, fmt.Errorf("%s did not answer on %s within 60s; see %s:\n%s", bin, healthAddr, logPath, tail(logPath, 15))
		}
	}
}

// Stop sends SIGTERM (Sluice drains) and waits; after grace, SIGKILL.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("did not stop within %v of SIGTERM; killed", grace)
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
