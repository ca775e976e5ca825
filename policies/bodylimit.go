package policies

import (
	"net/http"

	"github.com/meshgate/meshgate/config"
)

// bodyLimitStep compiles max_body_size; nil when it is not set.
//
// A request whose Content-Length is above the limit gets 413 at once,
// without its body being read. A body of unknown length (chunked, or
// HTTP/2 without content-length) is counted as it is read: past the limit
// the read fails with *http.MaxBytesError, which the gateway's forwarder
// answers with 413 too. A body of known length within the limit needs no
// counting: net/http never reads past Content-Length.
func (c *compiler) bodyLimitStep(path, policy string, limit config.Size) middleware {
	if limit == 0 || c.doc.Bad(path) {
		return nil
	}
	if limit < 0 {
		c.errorf(path, "%d is negative; want a size such as 1MiB", int64(limit))
		return nil
	}
	bl := &bodyLimit{policy: policy, limit: int64(limit)}
	return func(next http.Handler) http.Handler {
		bl := *bl
		bl.next = next
		return &bl
	}
}

// bodyLimit is the max_body_size step.
type bodyLimit struct {
	policy string
	limit  int64
	next   http.Handler
}

func (b *bodyLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > b.limit {
		st := stateOf(r)
		st.observe(r, b.policy, StepBodyLimit, "too_large")
		reject(w, r, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, b.limit)
	}
	stateOf(r).observe(r, b.policy, StepBodyLimit, "allow")
	b.next.ServeHTTP(w, r)
}
