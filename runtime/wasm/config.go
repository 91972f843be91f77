package wasm

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"go.yaml.in/yaml/v3"
)

// Config is the wasm transform's config in pipeline.yaml:
//
//	transforms:
//	  - wasm:
//	      module: enrich.wasm          # relative to pipeline.yaml
//	      config: { site: lab-1 }      # handed to the module's sluice_init as JSON
//	      memory_limit: 64MiB
//	      timeout: 100ms
//	      grants: { allow_clock: true }
type Config struct {
	// Module is the path of the .wasm file, relative to the directory of
	// pipeline.yaml unless absolute. Required.
	Module string `yaml:"module"`
	// Config is passed to the module's sluice_init as one JSON object
	// (default: {}).
	Config map[string]any `yaml:"config"`
	// MemoryLimit caps each instance's linear memory: bytes as an integer,
	// or a string with a binary unit: "512KiB", "64MiB", "1GiB" (default
	// 64MiB; rounded up to whole 64 KiB pages; at most 4GiB).
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// Timeout caps each call into the module, i.e. one chunk of at most
	// BatchSize records (default 100ms).
	Timeout time.Duration `yaml:"timeout"`
	// Instances is how many instances of the module may run at once, each
	// serving one call at a time (default: the number of CPUs). They are
	// made when first needed.
	Instances int `yaml:"instances"`
	// BatchSize is the most records handed to the module in one call;
	// larger batches are split into several calls (default 256).
	BatchSize int `yaml:"batch_size"`
	// ValidateOutput checks that every output value the module changed is
	// valid JSON, failing the record otherwise (default true).
	ValidateOutput *bool `yaml:"validate_output"`
	// Grants opens parts of the sandbox (default: none).
	Grants Grants `yaml:"grants"`
	// CacheDir, when set, keeps compiled modules on disk there so that a
	// restart does not compile them again (default: "", in memory only).
	CacheDir string `yaml:"cache_dir"`
}

// Grants opens parts of the sandbox to a module. In ABI v1 a module never
// gets a filesystem or a network, whatever the config says: WASI file and
// socket calls fail with EBADF/ENOTSUP.
type Grants struct {
	// AllowClock gives the module the real wall clock and monotonic clock,
	// and lets it sleep (each sleep capped at the call timeout). Default
	// false: the clocks are deterministic fakes (wall time starts at
	// 2022-01-01T00:00:00Z and each reading advances it 1ms) and sleeps
	// return at once.
	AllowClock bool `yaml:"allow_clock"`
	// AllowRandom gives the module the host's cryptographic random source.
	// Default false: random_get returns a fixed, deterministic sequence.
	AllowRandom bool `yaml:"allow_random"`
	// Env is the module's environment variables (default: none).
	Env map[string]string `yaml:"env"`
}

const (
	defaultMemoryLimit = 64 << 20
	defaultTimeout     = 100 * time.Millisecond
	defaultBatchSize   = 256
	pageSize           = 1 << 16
	maxMemory          = 1 << 32
)

// Validate fills in defaults and checks every field.
func (c *Config) Validate() error {
	if c.Module == "" {
		return pipeline.Invalid("module", "required: the path of the .wasm file")
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = defaultMemoryLimit
	}
	if c.MemoryLimit < 0 || c.MemoryLimit > maxMemory {
		return pipeline.Invalid("memory_limit", "must be positive and at most 4GiB, got %s", c.MemoryLimit)
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Timeout < 0 {
		return pipeline.Invalid("timeout", "must be positive, got %s", c.Timeout)
	}
	if c.Instances == 0 {
		c.Instances = runtime.NumCPU()
	}
	if c.Instances < 0 {
		return pipeline.Invalid("instances", "must be positive, got %d", c.Instances)
	}
	if c.BatchSize == 0 {
		c.BatchSize = defaultBatchSize
	}
	if c.BatchSize < 0 {
		return pipeline.Invalid("batch_size", "must be positive, got %d", c.BatchSize)
	}
	if c.ValidateOutput == nil {
		t := true
		c.ValidateOutput = &t
	}
	if _, err := c.configJSON(); err != nil {
		return pipeline.Invalid("config", "cannot be written as JSON: %v", err)
	}
	for k := range c.Grants.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return pipeline.Invalid("grants.env", "invalid variable name %q", k)
		}
	}
	return nil
}

// memoryPages is the memory limit in 64 KiB pages, rounded up.
func (c *Config) memoryPages() uint32 {
	return uint32((int64(c.MemoryLimit) + pageSize - 1) / pageSize)
}

// configJSON is the config handed to sluice_init.
func (c *Config) configJSON() ([]byte, error) {
	if len(c.Config) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(c.Config)
}

// ByteSize is a size in bytes that YAML may write as an integer or as a
// string with a binary unit (B, KiB, MiB, GiB).
type ByteSize int64

// ParseByteSize parses "65536", "512KiB", "64MiB" or "1GiB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	num, unit := s[:digits], strings.TrimSpace(s[digits:])
	mult, ok := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid size %q: want bytes or a number with KiB, MiB or GiB, e.g. 64MiB", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML accepts an integer or a string.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: memory size must be a number of bytes or a string like 64MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = v
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return strconv.FormatInt(int64(b>>30), 10) + "GiB"
	case b != 0 && b%(1<<20) == 0:
		return strconv.FormatInt(int64(b>>20), 10) + "MiB"
	case b != 0 && b%(1<<10) == 0:
		return strconv.FormatInt(int64(b>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}
