package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
)

// TestCheckSecurityFiles: `sluice validate` names a missing certificate,
// key or tokens file with its line and field, without starting anything.
func TestCheckSecurityFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ok.crt", "ok.key", "tokens.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, block, want string
	}{
		{"all present", "tls: { cert: ok.crt, key: ok.key }\n        auth: { tokens_file: tokens.txt }", ""},
		{"cert", "tls: { cert: no.crt, key: ok.key }", ":7: pipelines.p.source.websocket.tls.cert: cannot read " + filepath.Join(dir, "no.crt") + ": no such file or directory"},
		{"key", "tls: { cert: ok.crt, key: no.key }", ":7: pipelines.p.source.websocket.tls.key: cannot read " + filepath.Join(dir, "no.key") + ": no such file or directory"},
		{"tokens", "auth: { tokens_file: none.txt }", ":7: pipelines.p.source.websocket.auth.tokens_file: cannot read " + filepath.Join(dir, "none.txt") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "pipeline.yaml")
			yaml := "pipelines:\n  p:\n    source:\n      websocket:\n        listen: 127.0.0.1:0\n        path: /ingest\n        " + tt.block + "\n    sinks:\n      - stdout: {}\n"
			if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			file, err := pipeline.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			err = Default().Check(file, dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.want)):
				t.Fatalf("Check: got %v, want ...%s", err, tt.want)
			}
		})
	}
}
