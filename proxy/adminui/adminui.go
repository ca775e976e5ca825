// Package adminui is the admin page of the admin listener: one small HTML
// page, a script and a style sheet, embedded in the binary, with no build
// step and nothing loaded from elsewhere. The page reads /admin/routes and
// /admin/instances once a second and shows the routes, and per service its
// instances with health, circuit breaker and ejection state.
package adminui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/httperr"
)

// Prefix is the path the page is served under: Prefix itself and
// Prefix+"/" answer with the page, Prefix+"/app.js" and
// Prefix+"/style.css" with its assets.
const Prefix = "/admin/ui"

//go:embed index.html app.js style.css
var files embed.FS

// contentSecurityPolicy lets the page load only its own script and style
// and fetch only from the admin listener: no inline script, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the page and its assets; mount it on Prefix and on
// Prefix+"/" of the admin mux. Other paths under Prefix get a JSON 404.
// The files are revalidated on every load (Cache-Control: no-cache with an
// ETag), so an upgraded meshgate never serves a stale page.
func Handler() http.Handler {
	assets := map[string]*asset{}
	for name, ct := range map[string]string{
		"index.html": "text/html; charset=utf-8",
		"app.js":     "text/javascript; charset=utf-8",
		"style.css":  "text/css; charset=utf-8",
	} {
		b, err := files.ReadFile(name)
		if err != nil {
			// The embed directive above names these files: the build fails first.
			panic(fmt.Sprintf("adminui: embedded %s: %v", name, err))
		}
		sum := sha256.Sum256(b)
		assets[name] = &asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httperr.Write(w, r.Context(), http.StatusMethodNotAllowed, "the admin page is read-only: use GET")
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		name = strings.TrimPrefix(path.Clean("/"+name), "/")
		if name == "" || name == "index.html" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			httperr.Write(w, r.Context(), http.StatusNotFound, "unknown admin page asset; the page is "+Prefix)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if name == "index.html" {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			h.Set("Referrer-Policy", "no-referrer")
		}
		// ServeContent answers If-None-Match with 304 and handles HEAD and ranges.
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	})
}
