package adminui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(t *testing.T, method, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func TestAssets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, path, contentType string
		contains                []string
	}{
		{name: "the page without a slash", path: "/admin/ui", contentType: "text/html; charset=utf-8",
			contains: []string{`<script src="/admin/ui/app.js"`, `href="/admin/ui/style.css"`, `id="error-banner"`, `id="last-refresh"`}},
		{name: "the page with a slash", path: "/admin/ui/", contentType: "text/html; charset=utf-8", contains: []string{"<title>meshgate admin</title>"}},
		{name: "index.html", path: "/admin/ui/index.html", contentType: "text/html; charset=utf-8", contains: []string{"<title>meshgate admin</title>"}},
		{name: "script", path: "/admin/ui/app.js", contentType: "text/javascript; charset=utf-8",
			contains: []string{`"/admin/routes"`, `"/admin/instances"`, `"data-instance"`, `"data-state"`, `"breaker-open"`, `"ejected"`}},
		{name: "style sheet", path: "/admin/ui/style.css", contentType: "text/css; charset=utf-8", contains: []string{"tr.instance.state-ejected"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, body := serve(t, "GET", tc.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", res.StatusCode, body)
			}
			if got := res.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", got)
			}
			if res.Header.Get("ETag") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v: want an ETag and nosniff", res.Header)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q", s)
				}
			}
		})
	}
}

func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	res, body := serve(t, "GET", "/admin/ui", nil)
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, _ := files.ReadFile(name)
		if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") || strings.Contains(string(b), "//cdn") {
			t.Errorf("%s refers to another origin", name)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onload=") {
		t.Error("the page has inline script, which its Content-Security-Policy forbids")
	}
}

func TestRevalidation(t *testing.T) {
	t.Parallel()
	res, _ := serve(t, "GET", "/admin/ui/app.js", nil)
	etag := res.Header.Get("ETag")
	res, body := serve(t, "GET", "/admin/ui/app.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("If-None-Match %s: status %d with %d bytes, want 304 and no body", etag, res.StatusCode, len(body))
	}
	res, body = serve(t, "HEAD", "/admin/ui", nil)
	if res.StatusCode != http.StatusOK || body != "" || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD: status %d, %d bytes, Content-Type %q", res.StatusCode, len(body), res.Header.Get("Content-Type"))
	}
}

func TestErrorsAreJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path string
		status             int
	}{
		{name: "unknown asset", method: "GET", path: "/admin/ui/secret.txt", status: 404},
		{name: "no escape from the asset set", method: "GET", path: "/admin/ui/../adminui.go", status: 404},
		{name: "read-only", method: "POST", path: "/admin/ui", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, body := serve(t, tc.method, tc.path, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			var e struct {
				Error  string `json:"error"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != tc.status || e.Error == "" {
				t.Fatalf("body %q (%v): want the JSON error with status %d", body, err, tc.status)
			}
		})
	}
}
