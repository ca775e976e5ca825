package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOTLPSink(t *testing.T) {
	t.Parallel()
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/v1/traces", "application/x-protobuf", strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("POST /v1/traces: %s, Content-Type %q, body %q; want 200, application/x-protobuf, empty",
			resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if sink.exports.Load() != 1 || sink.bytes.Load() != 10 {
		t.Errorf("counted %d exports, %d bytes; want 1, 10", sink.exports.Load(), sink.bytes.Load())
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusOK}, // readiness
		{http.MethodGet, "/v1/traces", http.StatusNotFound},
		{http.MethodPost, "/v1/metrics", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
		}
	}
}
