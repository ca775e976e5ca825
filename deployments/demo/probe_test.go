package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/testproc"
)

func TestUsersURLFlag(t *testing.T) {
	t.Parallel()
	orders := []string{"-listen", "orders=127.0.0.1:0"}
	t.Run("accepted, trailing slash dropped", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		opts, err := parseFlags(append(orders, "-users-url", "http://127.0.0.1:19301/"), &out)
		if err != nil || opts.usersURL != "http://127.0.0.1:19301" {
			t.Errorf("usersURL = %q, %v; want http://127.0.0.1:19301\n%s", opts.usersURL, err, out.String())
		}
	})
	t.Run("only orders instances call users", func(t *testing.T) {
		t.Parallel()
		opts, err := parseFlags([]string{"-listen", "orders=127.0.0.1:0", "-listen", "users=127.0.0.1:0", "-users-url", "http://u:1"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := listen(opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer f.close()
		if f.instances[0].usersURL != "http://u:1" || f.instances[1].usersURL != "" {
			t.Errorf("usersURL = %q (orders), %q (users); want it on orders only", f.instances[0].usersURL, f.instances[1].usersURL)
		}
	})
	rejects := map[string]struct {
		args []string
		want string
	}{
		"no scheme":        {append(orders, "-users-url", "127.0.0.1:19301"), `invalid -users-url "127.0.0.1:19301"`},
		"other scheme":     {append(orders, "-users-url", "ftp://h:1"), "want an http or https base URL"},
		"no host":          {append(orders, "-users-url", "http:///users"), "want an http or https base URL"},
		"query":            {append(orders, "-users-url", "http://h:1/?a=b"), "want an http or https base URL"},
		"no orders":        {[]string{"-listen", "users=127.0.0.1:0", "-users-url", "http://h:1"}, "-users-url is for orders instances"},
		"not a URL at all": {append(orders, "-users-url", "http://[::1"), "invalid -users-url"},
	}
	for name, tt := range rejects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			if _, err := parseFlags(tt.args, &out); err == nil {
				t.Fatalf("parseFlags(%q) succeeded", tt.args)
			}
			if !strings.Contains(out.String(), tt.want) || !strings.Contains(out.String(), "Usage: meshgate-demo") {
				t.Errorf("output = %q, want %q and the usage", out.String(), tt.want)
			}
		})
	}
}

// hangupServer returns the URL of a server that closes every connection
// without answering.
func hangupServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	// Hangs up without answering. (A closed port could be taken by a
	// parallel test meanwhile.)
	hangup := hangupServer(t)

	tests := map[string]struct {
		args       []string
		status     int
		out, error string
	}{
		"2xx":             {[]string{srv.URL + "/healthz"}, 0, "204 No Content", ""},
		"redirect to 2xx": {[]string{srv.URL + "/redirect"}, 0, "204 No Content", ""},
		"503":             {[]string{srv.URL + "/readyz"}, 1, "503 Service Unavailable", ""},
		"no answer":       {[]string{hangup + "/healthz"}, 1, "", "GET " + hangup + "/healthz: "},
		"no URL":          {nil, 2, "", "Usage: meshgate-demo probe URL"},
		"two URLs":        {[]string{srv.URL, srv.URL}, 2, "", "Usage: meshgate-demo probe URL"},
		"not a URL":       {[]string{"localhost:9000"}, 2, "", `invalid URL "localhost:9000"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr testproc.Output
			if got := probeCmd(tt.args, &stdout, &stderr); got != tt.status {
				t.Errorf("exit status = %d, want %d; stdout %q, stderr %q", got, tt.status, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.error) {
				t.Errorf("stdout %q, stderr %q; want %q and %q", stdout.String(), stderr.String(), tt.out, tt.error)
			}
		})
	}
}

// The probe subcommand is reachable from the command line.
func TestCLIProbe(t *testing.T) {
	t.Parallel()
	if got := cli([]string{"probe"}, &testproc.Output{}); got != 2 {
		t.Errorf("meshgate-demo probe with no URL = %d, want 2", got)
	}
}
