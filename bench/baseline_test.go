package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestBackendHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(backendHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/any/path")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(body) != 100 || resp.ContentLength != 100 {
		t.Errorf("body is %d bytes (Content-Length %d), want 100", len(body), resp.ContentLength)
	}
	if !json.Valid(body) {
		t.Errorf("body is not JSON: %q", body)
	}
}

func TestBaselineProxy(t *testing.T) {
	t.Parallel()
	type seen struct {
		backend string
		xff     string
	}
	hits := make(chan seen, 10)
	newBackend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits <- seen{backend: name, xff: r.Header.Get("X-Forwarded-For")}
			io.WriteString(w, name)
		}))
	}
	a, b := newBackend("a"), newBackend("b")
	defer a.Close()
	defer b.Close()
	ups, err := parseUpstreams(strings.TrimPrefix(a.URL, "http://") + ", " + strings.TrimPrefix(b.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(newBaselineProxy(ups, log.New(io.Discard, "", 0)))
	defer front.Close()

	var order []string
	for range 4 {
		req, _ := http.NewRequest(http.MethodGet, front.URL+"/", nil)
		// A client-sent X-Forwarded-For must not survive: Rewrite strips it.
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h := <-hits
		order = append(order, h.backend)
		if h.xff != "127.0.0.1" {
			t.Errorf("backend saw X-Forwarded-For %q, want 127.0.0.1", h.xff)
		}
	}
	if got := strings.Join(order, ""); got != "abab" {
		t.Errorf("backends in order %q, want round robin abab", got)
	}
}

func TestParseUpstreams(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in      string
		want    []string
		wantErr bool
	}{
		"two":       {in: "127.0.0.1:1,127.0.0.1:2", want: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}},
		"spaces":    {in: " 127.0.0.1:1 , ", want: []string{"http://127.0.0.1:1"}},
		"empty":     {in: "", wantErr: true},
		"no port":   {in: "127.0.0.1", wantErr: true},
		"with path": {in: "http://127.0.0.1:1/", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseUpstreams(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseUpstreams(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			var s []string
			for _, u := range got {
				s = append(s, (&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Errorf("parseUpstreams(%q) = %v, want %v", tc.in, s, tc.want)
			}
		})
	}
}
