package policies

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/meshgate/meshgate/config"
)

// transformStep compiles the transform step of a policy; nil when the
// policy has none.
//
// Requests: headers (remove, set, add), then the path, then the query
// (remove, set, add), before the request goes on. Setting "Host" sets the
// request's host, which the upstream receives; hop-by-hop headers and
// Content-Length are meshgate's own and cannot be changed. The path rewrite
// matches the decoded path (r.URL.Path) and the result is re-escaped from
// its decoded form. Query operations re-encode the query (parameters in
// name order); a request without query operations keeps its query
// byte-for-byte.
//
// Responses: headers (remove, set, add) as the upstream's response head is
// written (1xx interim responses are left alone), and JSON field rules
// (see jsonfields.go), which buffer the body.
func (c *compiler) transformStep(path, policy string, spec *Transforms) middleware {
	if spec == nil || c.doc.Bad(path) {
		return nil
	}
	if spec.Request == nil && spec.Response == nil {
		c.errorf(path, "want at least one of request, response")
		return nil
	}
	t := &transformer{policy: policy}
	ok := true
	if rq := spec.Request; rq != nil {
		rp := config.Field(path, "request")
		if rq.Headers == nil && rq.Path == nil && rq.Query == nil {
			c.errorf(rp, "want at least one of headers, path, query")
			ok = false
		}
		if rq.Headers != nil {
			t.reqHeaders = c.xformHeaderOps(config.Field(rp, "headers"), rq.Headers, true, &ok)
		}
		if rq.Path != nil {
			t.path = c.xformPathRewrite(config.Field(rp, "path"), rq.Path, &ok)
		}
		if rq.Query != nil {
			t.query = c.xformQueryOps(config.Field(rp, "query"), rq.Query, &ok)
		}
	}
	if rs := spec.Response; rs != nil {
		rp := config.Field(path, "response")
		if rs.Headers == nil && rs.JSON == nil {
			c.errorf(rp, "want at least one of headers, json")
			ok = false
		}
		if rs.Headers != nil {
			t.resHeaders = c.xformHeaderOps(config.Field(rp, "headers"), rs.Headers, false, &ok)
		}
		if rs.JSON != nil {
			t.json = c.compileJSONFields(config.Field(rp, "json"), rs.JSON, &ok)
		}
	}
	if !ok {
		return nil
	}
	return func(next http.Handler) http.Handler {
		return &transformHandler{t: t, next: next}
	}
}

// transformer is a compiled transforms step.
type transformer struct {
	policy     string
	reqHeaders *xformHeaders
	path       *xformPath
	query      *xformQuery
	resHeaders *xformHeaders
	json       *jsonFields
}

// transformHandler is the transforms step.
type transformHandler struct {
	t    *transformer
	next http.Handler
}

func (h *transformHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := h.t
	st := stateOf(r)
	if t.reqHeaders != nil {
		t.reqHeaders.applyRequest(r)
	}
	if t.path != nil {
		if !t.path.apply(r) {
			st.observe(r, t.policy, StepTransform, "invalid_path")
			reject(w, r, http.StatusInternalServerError, "policy transform produced an invalid path")
			return
		}
	}
	if t.query != nil {
		t.query.apply(r)
	}
	st.observe(r, t.policy, StepTransform, "allow")
	switch {
	case t.json != nil:
		// The fields can only be filtered in a body meshgate can read:
		// ask the upstream for it uncompressed (an encoded JSON body
		// that comes anyway is refused rather than passed on).
		delete(r.Header, "Accept-Encoding")
		jw := newJSONWriter(w, r, t)
		h.next.ServeHTTP(jw, r)
		jw.finish()
	case t.resHeaders != nil:
		hw := &headWriter{rw: w, hook: t.resHeaders}
		h.next.ServeHTTP(hw, r)
		hw.finish()
	default:
		h.next.ServeHTTP(w, r)
	}
}

// xformReserved are the headers transforms may not touch: the hop-by-hop
// ones (RFC 9110 §7.6.1), which describe one connection and which the
// gateway strips anyway, and the message framing.
var xformReserved = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
}

// xformHeaders is a compiled HeaderOps for headers.
type xformHeaders struct {
	remove []string // canonical names
	set    []xformKV
	add    []xformKV
	host   string // request: set Host
}

// xformKV is one set or add operation.
type xformKV struct {
	key, val string
	vals     []string // []string{val}, shared by every request: capacity 1, so appends copy
}

// xformHeaderOps checks and compiles header operations; *ok turns false
// on a problem.
func (c *compiler) xformHeaderOps(path string, ops *HeaderOps, request bool, ok *bool) *xformHeaders {
	if len(ops.Remove)+len(ops.Set)+len(ops.Add) == 0 {
		c.errorf(path, "want at least one of remove, set, add")
		*ok = false
		return nil
	}
	x := &xformHeaders{}
	check := func(fp, name, op string) (string, bool) {
		if !isToken(name) {
			c.errorf(fp, "%q is not a header name; want a token such as X-Request-Id", name)
			return "", false
		}
		k := http.CanonicalHeaderKey(name)
		if slices.Contains(xformReserved, k) {
			c.errorf(fp, "%s is managed by meshgate (hop-by-hop or message framing) and cannot be changed", k)
			return "", false
		}
		if k == "Host" && (!request || op != "set") {
			if request {
				c.errorf(fp, "Host can only be set (it becomes the request's host); it cannot be removed or added")
			} else {
				c.errorf(fp, "Host is not a response header")
			}
			return "", false
		}
		return k, true
	}
	for i, name := range ops.Remove {
		if k, good := check(config.Index(config.Field(path, "remove"), i), name, "remove"); good {
			x.remove = append(x.remove, k)
		} else {
			*ok = false
		}
	}
	compileMap := func(op string, m map[string]string) []xformKV {
		var out []xformKV
		for _, name := range sortedKeys(m) {
			fp := config.Key(config.Field(path, op), name)
			k, good := check(fp, name, op)
			if !good {
				*ok = false
				continue
			}
			v := m[name]
			if !validHeaderValue(v) {
				c.errorf(fp, "the value has a control character (CR, LF, NUL, ...); header values cannot carry them")
				*ok = false
				continue
			}
			if k == "Host" {
				if v == "" || strings.ContainsAny(v, " /?#@") {
					c.errorf(fp, "%q is not a host; want host[:port]", v)
					*ok = false
					continue
				}
				x.host = v
				continue
			}
			out = append(out, xformKV{key: k, val: v, vals: []string{v}})
		}
		return out
	}
	x.set = compileMap("set", ops.Set)
	x.add = compileMap("add", ops.Add)
	return x
}

// applyRequest changes the request's headers.
func (x *xformHeaders) applyRequest(r *http.Request) {
	x.apply(r.Header)
	if x.host != "" {
		r.Host = x.host
		delete(r.Header, "Host")
	}
}

// apply changes h: remove, then set, then add.
func (x *xformHeaders) apply(h http.Header) {
	for _, k := range x.remove {
		delete(h, k)
	}
	for _, kv := range x.set {
		h[kv.key] = kv.vals
	}
	for _, kv := range x.add {
		h[kv.key] = append(h[kv.key], kv.val)
	}
}

// beforeHead applies response header operations (headHook).
func (x *xformHeaders) beforeHead(h http.Header, _ int) { x.apply(h) }

// validHeaderValue reports whether v may be a header field value (RFC
// 9110 §5.5): no control characters other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// sortedKeys returns the keys of m in order, so that problems and
// operations come in a fixed order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// xformPath is a compiled path rewrite.
type xformPath struct {
	re   *regexp.Regexp
	repl string
}

// xformPathRewrite checks and compiles a path rewrite.
func (c *compiler) xformPathRewrite(path string, spec *PathRewrite, ok *bool) *xformPath {
	pp, rp := config.Field(path, "pattern"), config.Field(path, "replacement")
	if spec.Pattern == "" {
		c.errorf(pp, "required; want an RE2 regular expression such as ^/v1/(.*)$")
		*ok = false
		return nil
	}
	re, err := regexp.Compile(spec.Pattern)
	if err != nil {
		c.errorf(pp, "invalid regular expression: %v", err)
		*ok = false
		return nil
	}
	if !strings.HasPrefix(spec.Replacement, "/") && !(strings.HasPrefix(spec.Replacement, "$") && !strings.HasPrefix(spec.Replacement, "$$")) {
		c.errorf(rp, "%q must start with / or a group reference ($1, ${name}): the rewritten path must be absolute", spec.Replacement)
		*ok = false
		return nil
	}
	if err := xformCheckGroups(re, spec.Replacement); err != "" {
		c.errorf(rp, "%s", err)
		*ok = false
		return nil
	}
	return &xformPath{re: re, repl: spec.Replacement}
}

// xformCheckGroups returns a problem with the group references of a
// replacement, as regexp.Expand reads them: "$name" takes the longest run
// of letters, digits and "_", so "$1x" names group "1x", not group 1.
func xformCheckGroups(re *regexp.Regexp, repl string) string {
	for {
		i := strings.IndexByte(repl, '$')
		if i < 0 {
			return ""
		}
		repl = repl[i+1:]
		if strings.HasPrefix(repl, "$") {
			repl = repl[1:]
			continue
		}
		name, num, rest, ok := xformExtract(repl)
		if !ok {
			continue // a lone "$" is literal text to Expand
		}
		repl = rest
		switch {
		case num >= 0 && num > re.NumSubexp():
			return fmt.Sprintf("refers to group $%s but the pattern has %d group(s)", name, re.NumSubexp())
		case num < 0 && re.SubexpIndex(name) < 0:
			return fmt.Sprintf("refers to group %q, which the pattern does not name (write ${1}x to follow group 1 by text)", name)
		}
	}
}

// xformExtract is regexp's parsing of a group reference after "$".
func xformExtract(str string) (name string, num int, rest string, ok bool) {
	if str == "" {
		return
	}
	brace := false
	if str[0] == '{' {
		brace = true
		str = str[1:]
	}
	i := 0
	for i < len(str) {
		r, size := utf8.DecodeRuneInString(str[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			break
		}
		i += size
	}
	if i == 0 {
		return
	}
	name = str[:i]
	if brace {
		if i >= len(str) || str[i] != '}' {
			return
		}
		i++
	}
	num = 0
	for j := 0; j < len(name); j++ {
		if name[j] < '0' || '9' < name[j] || num >= 1e8 {
			num = -1
			break
		}
		num = num*10 + int(name[j]) - '0'
	}
	if name[0] == '0' && len(name) > 1 {
		num = -1
	}
	return name, num, str[i:], true
}

// apply rewrites the first match in the request's path; false when the
// result is not an absolute path.
func (x *xformPath) apply(r *http.Request) bool {
	p := r.URL.Path
	m := x.re.FindStringSubmatchIndex(p)
	if m == nil {
		return true
	}
	b := make([]byte, 0, len(p)+len(x.repl))
	b = append(b, p[:m[0]]...)
	b = x.re.ExpandString(b, x.repl, p, m)
	b = append(b, p[m[1]:]...)
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	r.URL.Path = string(b)
	r.URL.RawPath = "" // re-escaped from Path
	return true
}

// xformQuery is compiled query parameter operations.
type xformQuery struct {
	remove []string
	set    []xformKV
	add    []xformKV
}

// xformQueryOps checks and compiles query operations.
func (c *compiler) xformQueryOps(path string, ops *HeaderOps, ok *bool) *xformQuery {
	if len(ops.Remove)+len(ops.Set)+len(ops.Add) == 0 {
		c.errorf(path, "want at least one of remove, set, add")
		*ok = false
		return nil
	}
	q := &xformQuery{}
	for i, name := range ops.Remove {
		if name == "" {
			c.errorf(config.Index(config.Field(path, "remove"), i), "a parameter name cannot be empty")
			*ok = false
			continue
		}
		q.remove = append(q.remove, name)
	}
	compileMap := func(op string, m map[string]string) []xformKV {
		var out []xformKV
		for _, name := range sortedKeys(m) {
			if name == "" {
				c.errorf(config.Key(config.Field(path, op), name), "a parameter name cannot be empty")
				*ok = false
				continue
			}
			out = append(out, xformKV{key: name, val: m[name]})
		}
		return out
	}
	q.set = compileMap("set", ops.Set)
	q.add = compileMap("add", ops.Add)
	return q
}

// apply changes the request's query and re-encodes it.
func (x *xformQuery) apply(r *http.Request) {
	q := r.URL.Query()
	for _, k := range x.remove {
		delete(q, k)
	}
	for _, kv := range x.set {
		q[kv.key] = []string{kv.val}
	}
	for _, kv := range x.add {
		q[kv.key] = append(q[kv.key], kv.val)
	}
	r.URL.RawQuery = q.Encode()
	r.URL.ForceQuery = false
}

// headHook is told when a response head is about to be written, with the
// header map it will carry and its status (never 1xx).
type headHook interface {
	beforeHead(h http.Header, status int)
}

// headWriter runs a hook just before the response head goes out: on
// WriteHeader, on the first Write, or on a Flush, whichever comes first.
// 1xx interim responses pass through without it. Hijack and the other
// http.ResponseController methods reach the underlying writer through
// Unwrap.
type headWriter struct {
	rw       http.ResponseWriter
	hook     headHook
	wrote    bool
	hijacked bool
}

func (w *headWriter) Header() http.Header { return w.rw.Header() }

func (w *headWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		w.hook.beforeHead(w.rw.Header(), code)
	}
	w.rw.WriteHeader(code)
}

func (w *headWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.rw.Write(p)
}

// FlushError sends the head (after the hook) and any buffered body.
func (w *headWriter) FlushError() error {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.rw).Flush()
}

// Hijack takes over the connection; the hook never runs after it.
func (w *headWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *headWriter) Unwrap() http.ResponseWriter { return w.rw }

// finish sends the head of a response the handler wrote nothing of, so
// that the hook applies to it too (net/http would send 200 itself).
func (w *headWriter) finish() {
	if !w.wrote && !w.hijacked {
		w.WriteHeader(http.StatusOK)
	}
}
