// Command sluice runs the pipelines declared in a pipeline.yaml.
//
//	sluice run -c pipeline.yaml        run until SIGINT/SIGTERM (SIGHUP reloads transforms)
//	sluice validate -c pipeline.yaml   check the file without connecting to anything
//	sluice transform test --module m.wasm --input records.jsonl
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  sluice run [-c pipeline.yaml] [--log-level info] [--log-format text|json]
  sluice validate [-c pipeline.yaml]
  sluice transform test --module m.wasm --input records.jsonl [--config k=v] [--expect out.jsonl]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "validate":
		return validateCmd(args[1:], stdout, stderr)
	case "transform":
		return transformCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n%s", args[0], usage)
		return 2
	}
}
