package policies

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/config"
)

// defaultJSONMaxBody is the default of transforms.response.json.max_body_size.
const defaultJSONMaxBody = 1 << 20

// jsonFields is a compiled JSONFields: the paths as tries.
//
// Bodies are transformed when the response's Content-Type is
// application/json or */*+json, with no Content-Encoding (or identity),
// the request is not HEAD and the status has a body. meshgate does not
// decompress: it removes Accept-Encoding from the requests of a route with
// a JSON transform, and a compressed JSON body that comes anyway is
// answered with 502 (decision "json_encoded") rather than passed on with
// the fields the policy denies. The rewritten body is the same JSON value
// re-encoded: object keys in sorted order, numbers as they were, no HTML
// escaping; Content-Length is recomputed and validators that describe the
// upstream's bytes (ETag, Content-MD5, Digest, ...) and Accept-Ranges are
// dropped.
type jsonFields struct {
	deny, allow, rename *jsonNode // nil when not given
	max                 int64
}

// jsonNode is one object level of a set of dotted paths.
type jsonNode struct {
	children map[string]*jsonNode
	terminal bool   // a path ends here
	renameTo string // rename: the new name of this field
}

func (n *jsonNode) child(name string) *jsonNode {
	if n.children == nil {
		n.children = make(map[string]*jsonNode)
	}
	c := n.children[name]
	if c == nil {
		c = &jsonNode{}
		n.children[name] = c
	}
	return c
}

// compileJSONFields checks and compiles the json rules of a response
// transform; *ok turns false on a problem.
func (c *compiler) compileJSONFields(path string, spec *JSONFields, ok *bool) *jsonFields {
	bad := func(p, format string, args ...any) {
		c.errorf(p, format, args...)
		*ok = false
	}
	if len(spec.Allow)+len(spec.Deny)+len(spec.Rename) == 0 {
		bad(path, "want at least one of allow, deny, rename")
		return nil
	}
	if spec.MaxBodySize == 0 {
		spec.MaxBodySize = defaultJSONMaxBody
	}
	if spec.MaxBodySize < 0 {
		bad(config.Field(path, "max_body_size"), "%d is negative; want a size such as 1MiB", int64(spec.MaxBodySize))
	}
	f := &jsonFields{max: int64(spec.MaxBodySize)}
	const want = `want field names joined by "." such as user.email`
	paths := func(field string, list []string) *jsonNode {
		if len(list) == 0 {
			return nil
		}
		root := &jsonNode{}
		for i, p := range list {
			segs, good := jsonSplit(p)
			if !good {
				bad(config.Index(config.Field(path, field), i), "%q is not a field path; %s", p, want)
				continue
			}
			n := root
			for _, s := range segs {
				n = n.child(s)
			}
			n.terminal = true
		}
		return root
	}
	f.deny = paths("deny", spec.Deny)
	f.allow = paths("allow", spec.Allow)
	if len(spec.Rename) > 0 {
		f.rename = &jsonNode{}
		targets := make(map[string]string) // parent path + "\x00" + new name → the rename's path
		for _, p := range sortedKeys(spec.Rename) {
			fp := config.Key(config.Field(path, "rename"), p)
			to := spec.Rename[p]
			segs, good := jsonSplit(p)
			switch {
			case !good:
				bad(fp, "%q is not a field path; %s", p, want)
				continue
			case to == "" || strings.Contains(to, "."):
				bad(fp, "%q is not a field name; want a single name (a rename stays in the same object)", to)
				continue
			case f.deny != nil && jsonCovers(f.deny, segs):
				bad(fp, "%q is removed by deny, so it cannot be renamed", p)
				continue
			case f.allow != nil && !jsonKeeps(f.allow, segs):
				bad(fp, "%q is not kept by allow, so it cannot be renamed; add it to allow", p)
				continue
			}
			key := strings.Join(segs[:len(segs)-1], ".") + "\x00" + to
			if other, dup := targets[key]; dup {
				bad(fp, "renames %q to %q like %q does; each new name must be unique in its object", p, to, other)
				continue
			}
			targets[key] = p
			n := f.rename
			for _, s := range segs {
				n = n.child(s)
			}
			n.renameTo = to
		}
	}
	return f
}

// jsonSplit splits a dotted path; false when a segment is empty.
func jsonSplit(p string) ([]string, bool) {
	segs := strings.Split(p, ".")
	return segs, !slices.Contains(segs, "")
}

// jsonCovers reports whether a path of the trie is segs or a prefix of it
// (deny of "user" removes "user.email").
func jsonCovers(root *jsonNode, segs []string) bool {
	covered, _ := jsonWalk(root, segs)
	return covered
}

// jsonKeeps reports whether allow keeps the field at segs: a path of the
// trie is segs or a prefix of it, or segs leads to one (an object leading
// to allowed fields).
func jsonKeeps(root *jsonNode, segs []string) bool {
	covered, leads := jsonWalk(root, segs)
	return covered || leads
}

// jsonWalk follows segs down the trie: covered when a path of the trie
// ends on the way (at segs or before), leads when segs is all in the trie
// without one ending.
func jsonWalk(root *jsonNode, segs []string) (covered, leads bool) {
	n := root
	for _, s := range segs {
		if n = n.children[s]; n == nil {
			return false, false
		}
		if n.terminal {
			return true, false
		}
	}
	return false, true
}

// Errors of transform, mapped to 502 for the client.
var (
	errJSONInvalid = errors.New("upstream sent invalid JSON")
)

// apply transforms a JSON body: deny, then allow, then rename.
func (f *jsonFields) apply(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers keep their digits
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errJSONInvalid
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errJSONInvalid // trailing data
	}
	if f.deny != nil {
		jsonDeny(v, f.deny)
	}
	if f.allow != nil {
		if nv, keep := jsonAllow(v, f.allow); keep {
			v = nv
		}
	}
	if f.rename != nil {
		jsonRename(v, f.rename)
	}
	var out bytes.Buffer
	out.Grow(len(body))
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, errJSONInvalid
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// jsonDeny removes the fields of the trie from v; arrays apply to each
// element.
func jsonDeny(v any, n *jsonNode) {
	switch v := v.(type) {
	case map[string]any:
		for name, c := range n.children {
			if c.terminal {
				delete(v, name)
			} else if sub, ok := v[name]; ok {
				jsonDeny(sub, c)
			}
		}
	case []any:
		for _, e := range v {
			jsonDeny(e, n)
		}
	}
}

// jsonAllow keeps only the fields of the trie in v, and the objects
// leading to them; arrays apply to each element. Where a path expects an
// object, a scalar is removed (false) and null kept: an allow list fails
// closed.
func jsonAllow(v any, n *jsonNode) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		for name, sub := range v {
			c := n.children[name]
			switch {
			case c == nil:
				delete(v, name)
			case c.terminal:
			default:
				if nv, keep := jsonAllow(sub, c); keep {
					v[name] = nv
				} else {
					delete(v, name)
				}
			}
		}
		return v, true
	case []any:
		out := v[:0]
		for _, e := range v {
			if ne, keep := jsonAllow(e, n); keep {
				out = append(out, ne)
			}
		}
		return out, true
	case nil:
		return nil, true
	default:
		return nil, false
	}
}

// jsonRename renames the fields of the trie in v, deepest first and all
// the fields of one object at once, so that paths name fields by their
// upstream names and renames may swap names.
func jsonRename(v any, n *jsonNode) {
	switch v := v.(type) {
	case map[string]any:
		type moved struct {
			to  string
			val any
		}
		var pending []moved
		for name, c := range n.children {
			sub, ok := v[name]
			if !ok {
				continue
			}
			if c.children != nil {
				jsonRename(sub, c)
			}
			if c.renameTo != "" {
				pending = append(pending, moved{c.renameTo, sub})
				delete(v, name)
			}
		}
		for _, m := range pending {
			v[m.to] = m.val
		}
	case []any:
		for _, e := range v {
			jsonRename(e, n)
		}
	}
}

// IsJSON reports whether a Content-Type is application/json or a +json
// type (RFC 6839). JSON transforms and aggregate parts use it.
func IsJSON(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, "application/json") ||
		len(ct) > 5 && strings.EqualFold(ct[len(ct)-5:], "+json") && strings.IndexByte(ct, '/') > 0
}

// jsonIdentity reports whether the response body is not content-coded.
func jsonIdentity(h http.Header) bool {
	for _, v := range h["Content-Encoding"] {
		if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, "identity") {
			return false
		}
	}
	return true
}

// jsonRepresentation are the headers that describe the upstream's bytes,
// dropped when the body changes.
var jsonRepresentation = [...]string{
	"Content-Length", "Etag", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Accept-Ranges",
}

// jsonWriter buffers a JSON response body to transform it once the
// handler returns; other responses pass through, with the response header
// operations applied. While buffering, Flush is a no-op: no part of an
// untransformed body may reach the client.
type jsonWriter struct {
	rw     http.ResponseWriter
	r      *http.Request
	t      *transformer
	before http.Header // the head before the upstream answered, for errors
	state  jsonState
	status int
	buf    []byte
	// hijacked: the connection was taken over; nothing more is written.
	hijacked bool
}

type jsonState uint8

const (
	jsonHeadPending jsonState = iota
	jsonPassThrough           // head sent; the body streams
	jsonBuffering             // head held; the body is being collected
	jsonAnswered              // the gateway answered (502); the rest is dropped
)

func newJSONWriter(w http.ResponseWriter, r *http.Request, t *transformer) *jsonWriter {
	return &jsonWriter{rw: w, r: r, t: t, before: w.Header().Clone()}
}

func (w *jsonWriter) Header() http.Header { return w.rw.Header() }

func (w *jsonWriter) WriteHeader(code int) {
	if w.state != jsonHeadPending {
		if w.state == jsonPassThrough {
			w.rw.WriteHeader(code) // net/http reports a superfluous call
		}
		return
	}
	if code < 200 {
		w.rw.WriteHeader(code) // interim: 100, 103
		return
	}
	h := w.rw.Header()
	if IsJSON(h.Get("Content-Type")) {
		switch {
		case w.r.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
			// No body to change; the length and validators of a HEAD
			// would describe the untransformed body.
			if w.r.Method == http.MethodHead {
				for _, k := range jsonRepresentation {
					delete(h, k)
				}
			}
		case !jsonIdentity(h):
			// Passing it on would pass on the fields the policy denies.
			stateOf(w.r).observe(w.r, w.t.policy, StepTransform, "json_encoded")
			w.answer(http.StatusBadGateway, "upstream sent an encoded JSON body that cannot be transformed")
			return
		default:
			w.state, w.status = jsonBuffering, code
			if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && cl > w.t.json.max {
				w.tooLarge()
			}
			return
		}
	}
	w.state = jsonPassThrough
	if w.t.resHeaders != nil {
		w.t.resHeaders.apply(h)
	}
	w.rw.WriteHeader(code)
}

func (w *jsonWriter) Write(p []byte) (int, error) {
	switch w.state {
	case jsonHeadPending:
		w.WriteHeader(http.StatusOK)
		return w.Write(p)
	case jsonPassThrough:
		return w.rw.Write(p)
	case jsonBuffering:
		if int64(len(w.buf))+int64(len(p)) > w.t.json.max {
			w.tooLarge()
			return len(p), nil
		}
		w.buf = append(w.buf, p...)
		return len(p), nil
	default:
		// Dropped: an error here would read to the forwarder as a
		// client gone and abort the 502 already written.
		return len(p), nil
	}
}

// FlushError flushes a streamed response; while the body is buffered, or
// after the gateway answered, it does nothing.
func (w *jsonWriter) FlushError() error {
	switch w.state {
	case jsonHeadPending:
		w.WriteHeader(http.StatusOK)
		if w.state != jsonPassThrough {
			return nil
		}
	case jsonBuffering, jsonAnswered:
		return nil
	}
	return http.NewResponseController(w.rw).Flush()
}

// Hijack takes over the connection (a protocol switch); the transforms
// do not apply to what follows.
func (w *jsonWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (EnableFullDuplex, deadlines).
func (w *jsonWriter) Unwrap() http.ResponseWriter { return w.rw }

// tooLarge answers 502 in place of a body too large to transform: the
// alternative, sending it unchanged, would leak the fields it must not.
func (w *jsonWriter) tooLarge() {
	w.buf = nil
	stateOf(w.r).observe(w.r, w.t.policy, StepTransform, "json_too_large")
	w.answer(http.StatusBadGateway, "response too large to transform")
	_ = http.NewResponseController(w.rw).Flush()
}

// answer replaces the upstream's response with the gateway's error: the
// head goes back to what it was before the upstream answered (headers of
// earlier steps stay; the upstream's, which describe its body, go).
func (w *jsonWriter) answer(status int, msg string) {
	w.state = jsonAnswered
	h := w.rw.Header()
	clear(h)
	for k, vv := range w.before {
		h[k] = vv
	}
	reject(w.rw, w.r, status, msg)
}

// finish writes the buffered body, transformed, once the handler has
// returned.
func (w *jsonWriter) finish() {
	if w.state == jsonHeadPending && !w.hijacked {
		w.WriteHeader(http.StatusOK)
	}
	if w.state != jsonBuffering {
		return
	}
	h := w.rw.Header()
	body := w.buf
	if len(bytes.TrimSpace(body)) > 0 {
		out, err := w.t.json.apply(body)
		if err != nil {
			stateOf(w.r).observe(w.r, w.t.policy, StepTransform, "json_invalid")
			w.answer(http.StatusBadGateway, err.Error())
			return
		}
		body = out
	}
	// Trailers the upstream announced were copied into the header map
	// after the body; with a known length there are none to send.
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			delete(h, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	delete(h, "Trailer")
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			delete(h, k)
		}
	}
	for _, k := range jsonRepresentation {
		delete(h, k)
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if w.t.resHeaders != nil {
		w.t.resHeaders.apply(h)
	}
	w.state = jsonPassThrough
	w.rw.WriteHeader(w.status)
	_, _ = w.rw.Write(body)
}
