package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository root (the directory holding go.mod of
// the main module).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "pipeline")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found above the working directory")
		}
		dir = parent
	}
}

// BuildGoGuest compiles the Go example transform plugins/examples/go/<name>
// from source to WebAssembly (GOOS=wasip1, -buildmode=c-shared) and returns
// the path of the .wasm file, in a directory removed after the test.
func BuildGoGuest(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join(RepoRoot(t), "plugins", "examples", "go", name)
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", name, err, b)
	}
	return out
}

// BuildWAT assembles the WebAssembly text file at path (relative to the
// repository root) with wabt's wat2wasm and returns the .wasm path.
func BuildWAT(t testing.TB, path string) string {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Fatal("wat2wasm not found: install Debian's wabt (scripts/deps.sh does)")
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path)+".wasm")
	cmd := exec.Command("wat2wasm", "-o", out, filepath.Join(RepoRoot(t), path))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", path, err, b)
	}
	return out
}
