package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshgate/meshgate/internal/probe"
)

// newProbeCmd is `meshgate probe URL`: the container health check of the
// meshgate image, which is distroless and so has no shell or curl, for
// example ["CMD", "/meshgate", "probe", "http://127.0.0.1:9901/readyz"].
func newProbeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "probe URL",
		Short: "GET a URL and exit 0 on a 2xx answer within 2s, 1 otherwise (a container health check)",
		Long: `probe sends GET URL, prints the answer's status, and exits 0 when it is
2xx within 2 seconds, 1 otherwise. It is meant for container health checks
on images without curl:

  healthcheck:
    test: ["CMD", "/meshgate", "probe", "http://127.0.0.1:9901/readyz"]`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch probe.Run(cmd.Context(), args[0], "meshgate-probe/"+Version, cmd.OutOrStdout(), cmd.ErrOrStderr()) {
			case probe.OK:
				return nil
			case probe.InvalidURL:
				return fmt.Errorf("probe: invalid URL %q: want http://host:port/path", args[0])
			default:
				return exitError{1}
			}
		},
	}
}
