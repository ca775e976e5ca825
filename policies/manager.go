package policies

import (
	"encoding/json"
	"errors"
	"net/http"
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
	subs    []func(*Set)
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

// Subscribe calls f with every set that goes into force, after the swap.
// The gateway relinks its route chains from it.
func (m *Manager) Subscribe(f func(*Set)) {
	m.mu.Lock()
	m.subs = append(m.subs, f)
	m.mu.Unlock()
}

// Load compiles sources and, when they are valid and check (if not nil)
// accepts the result, puts the new set in force. Otherwise the set in
// force stays, and the problem is returned, logged by the caller, counted
// and shown in Status.
func (m *Manager) Load(sources []Source, haveRedis bool, check func(*Set) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.res.begin()
	set, err := compileSources(sources, &m.env, m.res, false, haveRedis)
	if err == nil && check != nil {
		err = check(set)
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
	m.curKeys = m.res.usedKeys()
	if cerr := m.res.commit(); cerr != nil {
		m.env.Logger.Warn("closing policy resources", "error", cerr)
	}
	m.cur.Store(set)
	m.status.Reloads++
	m.status.LastError, m.status.LastErrorAt = "", time.Time{}
	m.status.LoadedAt = time.Now()
	m.status.Files = set.files
	m.status.Policies = m.status.Policies[:0:0]
	for _, p := range set.policies {
		ps := PolicyStatus{Name: p.name, File: p.file, Line: p.line, Spec: p.spec}
		for k, mw := range p.steps {
			if mw != nil {
				ps.Steps = append(ps.Steps, stepOrder[k])
			}
		}
		m.status.Policies = append(m.status.Policies, ps)
	}
	m.observeReload(true)
	for _, f := range m.subs {
		f(set)
	}
	return nil
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
	s.Files = append([]string(nil), s.Files...)
	s.Policies = append([]PolicyStatus(nil), s.Policies...)
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
