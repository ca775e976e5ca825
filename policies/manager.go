package policies

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Manager owns the policy set in force: it compiles sources on load and
// reload, swaps the result in atomically, keeps the last good set when a
// reload fails, and carries long-lived state (JWKS caches, rate-limit
// buckets) across reloads.
type Manager struct {
	env Env
	res *resources

	mu      sync.Mutex // serialises loads; requests never take it
	cur     atomic.Pointer[Set]
	curKeys map[string]bool
	status  Status
}

// Status is the state of the policy files, for /admin/policies.
type Status struct {
	// Files loaded into the set in force, in order.
	Files []string `json:"files"`
	// Policies in force.
	Policies []PolicyStatus `json:"policies"`
	// LoadedAt is when the set in force was loaded.
	LoadedAt time.Time `json:"loaded_at"`
	// Reloads counts loads that went into force; Failures those that did
	// not (the previous set stayed).
	Reloads  uint64 `json:"reloads"`
	Failures uint64 `json:"failures"`
	// LastError is the problem of the last failed load, if it came after
	// the last good one.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// PolicyStatus describes one policy in force.
type PolicyStatus struct {
	Name  string   `json:"name"`
	File  string   `json:"file"`
	Line  int      `json:"line"`
	Steps []string `json:"steps"`
	Spec  *Policy  `json:"spec"`
}

// NewManager returns a manager with no policies in force.
func NewManager(env Env) *Manager {
	fillEnv(&env)
	return &Manager{env: env, res: newResources()}
}

// Current returns the set in force; nil before the first successful load
// (a nil *Set links no steps).
func (m *Manager) Current() *Set { return m.cur.Load() }

// Load compiles sources and hands the new set to install, which puts it
// in force where requests see it (the gateway links its routes' chains
// from it, together with the config the set was checked against) or
// refuses it with an error. When compiling or install fails, the set in
// force stays; the problem is returned, to be logged by the caller, and is
// counted and shown in Status. Only once the new set is in force are the
// resources the old one alone used (JWKS refreshes, rate-limit buckets)
// closed.
func (m *Manager) Load(sources []Source, haveRedis bool, install func(*Set) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.res.begin()
	set, err := compileSources(sources, &m.env, m.res, false, haveRedis)
	if err == nil && install != nil {
		err = install(set)
	}
	if err != nil {
		m.status.Failures++
		m.status.LastError = err.Error()
		m.status.LastErrorAt = time.Now()
		if cerr := m.res.abort(m.curKeys); cerr != nil {
			m.env.Logger.Warn("closing policy resources", "error", cerr)
		}
		m.observeReload(false)
		return err
	}
	m.cur.Store(set)
	m.curKeys = m.res.usedKeys()
	if cerr := m.res.commit(); cerr != nil {
		m.env.Logger.Warn("closing policy resources", "error", cerr)
	}
	m.status.Reloads++
	m.status.LastError, m.status.LastErrorAt = "", time.Time{}
	m.status.LoadedAt = time.Now()
	m.status.Files = set.files
	m.status.Policies = m.status.Policies[:0:0]
	for _, p := range set.policies {
		ps := PolicyStatus{Name: p.name, File: p.file, Line: p.line, Spec: redactedSpec(p.spec)}
		for k, mw := range p.steps {
			if mw != nil {
				ps.Steps = append(ps.Steps, stepOrder[k])
			}
		}
		m.status.Policies = append(m.status.Policies, ps)
	}
	m.observeReload(true)
	return nil
}

// redactedSpec returns a copy of a policy for /admin/policies without
// what must not leave the process: credentials in a JWKS URL and the
// hashes of API keys (unsalted, so a short key could be found from it).
func redactedSpec(p *Policy) *Policy {
	out := *p
	if p.Authn != nil {
		a := *p.Authn
		if a.JWT != nil {
			j := *a.JWT
			j.JWKSURL = redactURL(j.JWKSURL)
			a.JWT = &j
		}
		if a.APIKeys != nil {
			k := *a.APIKeys
			k.Keys = make([]APIKey, len(a.APIKeys.Keys))
			for i, key := range a.APIKeys.Keys {
				k.Keys[i] = APIKey{Name: key.Name, SHA256: "(redacted)"}
			}
			a.APIKeys = &k
		}
		out.Authn = &a
	}
	return &out
}

// redactURL drops the user information and query of a URL, which may
// carry credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.User == nil && u.RawQuery == "") {
		return s
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	return u.String()
}

func (m *Manager) observeReload(ok bool) {
	if ro, isRO := m.env.Observer.(ReloadObserver); isRO {
		ro.Reloaded(ok)
	}
}

// ReloadObserver, when the Env's Observer implements it, is told of every
// load's outcome.
type ReloadObserver interface {
	Reloaded(ok bool)
}

// Status returns a copy of the manager's status.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Files = append([]string{}, s.Files...)
	s.Policies = append([]PolicyStatus{}, s.Policies...)
	return s
}

// ServeHTTP serves /admin/policies: the status as JSON.
func (m *Manager) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(m.Status())
}

// Close stops every background task (JWKS refreshes) and closes the
// resources of the set in force. Requests still running keep working with
// what they hold.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.curKeys = nil
	return errors.Join(m.res.close())
}
