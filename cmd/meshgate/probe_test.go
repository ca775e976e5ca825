package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/probe"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !strings.HasPrefix(r.UserAgent(), "meshgate-probe/") {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Write([]byte("ready\n"))
		case "/hangup":
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)

	tests := map[string]struct {
		args           []string
		status         int
		stdout, stderr string
		maxTime        time.Duration
	}{
		"ready":       {[]string{srv.URL + "/readyz"}, 0, "GET " + srv.URL + "/readyz: 200 OK", "", time.Second},
		"not ready":   {[]string{srv.URL + "/draining"}, 1, "503 Service Unavailable", "", time.Second},
		"no answer":   {[]string{srv.URL + "/hangup"}, 1, "", "GET " + srv.URL + "/hangup: ", time.Second},
		"too slow":    {[]string{srv.URL + "/slow"}, 1, "", "context deadline exceeded", probe.Timeout + time.Second},
		"not a URL":   {[]string{"127.0.0.1:9901/readyz"}, 1, "", `invalid URL "127.0.0.1:9901/readyz"`, time.Second},
		"no argument": {nil, 1, "", "accepts 1 arg(s), received 0", time.Second},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, append([]string{"probe"}, tt.args...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			status := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stdout %q, stderr %q", status, tt.status, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want %q and %q", stdout.String(), stderr.String(), tt.stdout, tt.stderr)
			}
			if took > tt.maxTime {
				t.Errorf("probe took %v, want at most %v", took, tt.maxTime)
			}
		})
	}
}
