package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// probeTimeout bounds `meshgate probe`, redirects included.
const probeTimeout = 2 * time.Second

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
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("probe: invalid URL %q: want http://host:port/path", args[0])
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), probeTimeout)
			defer cancel()
			status, err := probeURL(ctx, u.String())
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "GET %s: %v\n", u, err)
				return exitError{1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "GET %s: %s\n", u, status)
			if status.code/100 != 2 {
				return exitError{1}
			}
			return nil
		},
	}
}

// probeStatus is an answer's status line.
type probeStatus struct {
	code int
	text string
}

func (s probeStatus) String() string { return s.text }

// probeURL GETs url once, on a fresh connection, and returns the status.
func probeURL(ctx context.Context, url string) (probeStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return probeStatus{}, err
	}
	req.Header.Set("User-Agent", "meshgate-probe/"+Version)
	// No proxy from the environment: the probe is about this container.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return probeStatus{}, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return probeStatus{resp.StatusCode, resp.Status}, nil
}
