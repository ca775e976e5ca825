package main

import (
	"context"
	"fmt"
	"io"

	"github.com/meshgate/meshgate/internal/probe"
)

// probeCmd implements `meshgate-demo probe URL`: GET URL, print the
// status, exit 0 for 2xx and 1 otherwise (2 for a bad command line). It is
// the container health check of the demo image, which has no shell or
// curl.
func probeCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "Usage: meshgate-demo probe URL\n\nGETs URL and exits 0 when it answers 2xx within 2s, else 1.")
		return probe.InvalidURL
	}
	return probe.Run(context.Background(), args[0], "meshgate-demo-probe", stdout, stderr)
}
