package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	flagLong = flag.Bool("chaos.long", os.Getenv("SLUICE_CHAOS_LONG") != "",
		"run the long suite: also the scenarios that restart the shared Kafka and ClickHouse (env SLUICE_CHAOS_LONG)")
	flagRecords = flag.Int("chaos.records", 0,
		"records per scenario (default 12000; the issue's size is 200000)")
	flagDevices = flag.Int("chaos.devices", 0,
		"devices per scenario (default 20; the issue's size is 100)")
	flagIngest = flag.Duration("chaos.ingest", 0,
		"in paced scenarios, devices spread their records over at least this long (default 18s, 60s with -chaos.long)")
	flagSeed    = flag.Uint64("chaos.seed", 0, "random seed for fault timing (default: from the clock; printed)")
	flagFigures = flag.String("chaos.figures", os.Getenv("SLUICE_CHAOS_FIGURES"),
		"append each scenario's FIGURES line to this file (env SLUICE_CHAOS_FIGURES)")
	flagKeep = flag.String("chaos.keep", "",
		"copy each scenario's directory (sluice.log, dead letters, device logs) under this directory")
)

func records() int {
	if *flagRecords > 0 {
		return *flagRecords
	}
	return 12000
}

func devices() int {
	if *flagDevices > 0 {
		return *flagDevices
	}
	return 20
}

func ingestFor() time.Duration {
	if *flagIngest > 0 {
		return *flagIngest
	}
	if *flagLong {
		return 60 * time.Second
	}
	return 18 * time.Second
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(deviceHelperMain())
	}
	flag.Parse()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Artifacts built once per test binary: the sluice binary and the WASM
// transforms, compiled from source.
type artifacts struct {
	sluice string
	split  string
	enrich string
	cache  string // wasm compilation cache shared by every sluice start
}

var (
	buildOnce sync.Once
	buildDir  string
	built     artifacts
	buildErr  error
)

func build(t *testing.T) artifacts {
	t.Helper()
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "sluice-chaos-")
		if err != nil {
			buildErr = err
			return
		}
		start := time.Now()
		built = artifacts{
			sluice: filepath.Join(buildDir, "sluice"),
			split:  filepath.Join(buildDir, "split.wasm"),
			enrich: filepath.Join(buildDir, "enrich.wasm"),
			cache:  filepath.Join(buildDir, "wasm-cache"),
		}
		cmd := exec.Command("go", "build", "-o", built.sluice, "./cmd/sluice")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
			return
		}
		for _, g := range []struct{ name, out string }{{"split", built.split}, {"enrich", built.enrich}} {
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", g.out, ".")
			cmd.Dir = filepath.Join(root, "plugins", "examples", "go", g.name)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build guest %s: %v\n%s", g.name, err, out)
				return
			}
		}
		t.Logf("built sluice and the split and enrich transforms in %v", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "sluice")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root not found above the working directory")
		}
		dir = parent
	}
}
