// Package probe is the container health check of meshgate's images,
// which are distroless and so have no shell or curl: `meshgate probe URL`
// and `meshgate-demo probe URL` both run it.
package probe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Timeout bounds one probe, redirects included.
const Timeout = 2 * time.Second

// Exit statuses of Run.
const (
	OK         = 0 // a 2xx answer within Timeout
	Failed     = 1 // another answer, or none
	InvalidURL = 2 // not an http(s) URL with a host
)

// Run GETs rawURL once on a fresh connection, prints the status line to
// stdout (or the error to stderr) and returns the exit status.
func Run(ctx context.Context, rawURL, userAgent string, stdout, stderr io.Writer) int {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "probe: invalid URL %q: want http://host:port/path\n", rawURL)
		return InvalidURL
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return InvalidURL
	}
	req.Header.Set("User-Agent", userAgent)
	// No proxy from the environment and no pooled connection: the probe
	// is about this container, now.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "GET %s: %v\n", u, err)
		return Failed
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	fmt.Fprintf(stdout, "GET %s: %s\n", u, resp.Status)
	if resp.StatusCode/100 != 2 {
		return Failed
	}
	return OK
}
