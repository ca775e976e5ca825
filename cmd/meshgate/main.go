// Command meshgate is the meshgate sidecar and edge gateway.
//
//	meshgate run --config FILE     serve (also MESHGATE_CONFIG; embedded default without either)
//	meshgate validate FILE...      check configuration files (and the policy files they name)
//	meshgate validate --policies D check policy files on their own
//	meshgate hash-key [--generate] the SHA-256 of an API key, for a policy file
//	meshgate probe URL             GET URL, exit 0 on 2xx (container health checks)
//	meshgate version               print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(execute(ctx, os.Args[1:]))
}

func execute(ctx context.Context, args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "meshgate:", err)
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "meshgate",
		Short: "meshgate is a service-mesh sidecar and edge gateway",
		Long: `meshgate runs beside each service as its sidecar, and at the edge as the
single entry point for clients. It discovers instances, routes and balances
requests, and reports what it does over its admin listener.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newValidateCmd(), newHashKeyCmd(), newVersionCmd(), newProbeCmd())
	return root
}
