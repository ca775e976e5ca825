package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// probeTimeout bounds `meshgate-demo probe`.
const probeTimeout = 2 * time.Second

// probe implements `meshgate-demo probe URL`: GET URL, print the status,
// exit 0 for 2xx and 1 otherwise (2 for a bad command line). It is the
// container health check of the demo image, which has no shell or curl.
func probe(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "Usage: meshgate-demo probe URL\n\nGETs URL and exits 0 when it answers 2xx within 2s, else 1.")
		return 2
	}
	u, err := url.Parse(args[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "probe: invalid URL %q: want http://host:port/path\n", args[0])
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return 2
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "probe: GET %s: %v\n", u, err)
		return 1
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	fmt.Fprintf(stdout, "GET %s: %s\n", u, resp.Status)
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
