// Package file is a sink that appends records as JSON lines to a file or to
// standard output, for debugging and as a dead-letter output.
package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/sluicehq/sluice/pipeline"
)

// Config configures the file sink.
//
//	sinks:
//	  - file: { path: out.jsonl }
//	  - stdout: {}
type Config struct {
	// Path is the file to append to; "-" is standard output (required).
	Path string `yaml:"path"`
	// Sync calls fsync after every batch so that an acknowledged record
	// survives power loss (default true for files; ignored for stdout).
	Sync *bool `yaml:"sync"`
	// Metadata wraps each record as {"key":…,"dest":…,"device_id":…,
	// "seq":…,"part":…,"value":…} instead of writing the value alone
	// (default false).
	Metadata bool `yaml:"metadata"`
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.Path == "" {
		return pipeline.Invalid("path", `required (a file path, or "-" for standard output)`)
	}
	if c.Sync == nil {
		sync := c.Path != "-"
		c.Sync = &sync
	}
	return nil
}

var _ pipeline.Sink = (*Sink)(nil)

// Sink appends JSON lines.
type Sink struct {
	cfg  Config
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	out  io.Writer // what w writes to
	size int64     // the file's length after the last whole batch
}

// New opens the file for appending (creating it) or uses stdout.
func New(_ context.Context, cfg Config, env pipeline.Env) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Path == "-" {
		return &Sink{cfg: cfg, out: os.Stdout, w: bufio.NewWriter(os.Stdout)}, nil
	}
	path := pipeline.Resolve(env.Dir, cfg.Path)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("file: open %s: %w", path, err)
	}
	size, torn, err := cutTornLine(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("file: %s: %w", path, err)
	}
	if torn > 0 && env.Logger != nil {
		env.Logger.Warn("file sink: dropped the end of a line cut short by a crash (its batch was never acknowledged, and is sent again)",
			"path", path, "bytes", torn)
	}
	return &Sink{cfg: cfg, f: f, out: f, w: bufio.NewWriter(f), size: size}, nil
}

// cutTornLine truncates f after its last newline: bytes after it are a
// line that a crash cut short (a batch is written in several writes, and
// acknowledged only once all of them and the fsync are done). It returns
// f's new length and how many bytes it cut.
func cutTornLine(f *os.File) (size, cut int64, err error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, err
	}
	var buf [4096]byte
	for size = end; size > 0; {
		n := min(size, int64(len(buf)))
		if _, err := f.ReadAt(buf[:n], size-n); err != nil {
			return 0, 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			size = size - n + int64(i) + 1
			break
		}
		size -= n
	}
	if size == end {
		return size, 0, nil
	}
	if err := f.Truncate(size); err != nil {
		return 0, 0, err
	}
	return size, end - size, f.Sync()
}

// NewWriter returns a sink that writes to w, for tests and tools.
func NewWriter(w io.Writer, metadata bool) *Sink {
	return &Sink{cfg: Config{Path: "-", Metadata: metadata}, out: w, w: bufio.NewWriter(w)}
}

// Write appends one line per record and flushes (and fsyncs files).
func (s *Sink) Write(_ context.Context, b pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64 // bytes of the batch
	for _, r := range b {
		v := r.Value
		if s.cfg.Metadata {
			v = Wrap(r)
		}
		s.w.Write(v)
		s.w.WriteByte('\n')
		n += int64(len(v)) + 1
	}
	err := s.w.Flush()
	if err != nil {
		err = fmt.Errorf("file: write %s: %w", s.cfg.Path, err)
	} else if s.f != nil && *s.cfg.Sync {
		if err = s.f.Sync(); err != nil {
			err = fmt.Errorf("file: fsync %s: %w", s.cfg.Path, err)
		}
	}
	if err != nil {
		// The batch fails and is retried: start it again from a clean
		// end, without the part of it that was written.
		s.w.Reset(s.out)
		if s.f != nil {
			if terr := s.f.Truncate(s.size); terr != nil {
				err = fmt.Errorf("%w (and cutting the partial batch: %v)", err, terr)
			}
		}
		return err
	}
	s.size += n
	return nil
}

// Wrap renders r with its metadata as one JSON object.
func Wrap(r pipeline.Record) []byte {
	str := func(s string) []byte { q, _ := json.Marshal(s); return q }
	b := []byte(`{`)
	if len(r.Key) > 0 {
		b = fmt.Appendf(b, `"key":%s,`, str(string(r.Key)))
	}
	if r.Dest != "" {
		b = fmt.Appendf(b, `"dest":%s,`, str(r.Dest))
	}
	if !r.ID.IsZero() {
		b = fmt.Appendf(b, `"device_id":%s,"seq":%d,"part":%d,`, str(r.ID.Device), r.ID.Seq, r.ID.Part)
	}
	b = append(b, `"value":`...)
	b = append(b, r.Value...)
	return append(b, '}')
}

// Close flushes and closes the file.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Flush()
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
