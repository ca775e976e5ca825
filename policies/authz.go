package policies

import (
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshgate/meshgate/config"
)

// Authz decisions, as the step reports them.
const (
	authzAllow = "allow"
	authzDeny  = "deny"
	// authzDefaultRule names the decision of Default in logs and spans.
	authzDefaultRule = "default"
)

// authzRule is a compiled rule.
type authzRule struct {
	name    string
	allow   bool
	sel     requestSelector
	sources []netip.Prefix
	when    *celCond // nil: no condition
}

// authzPolicy is the compiled authz step of one policy.
type authzPolicy struct {
	policy       string
	rules        []authzRule
	defaultAllow bool
}

// authzStep compiles the authz step of a policy; nil when the policy has none.
//
// Rules are tried in order and the first that matches decides; a rule
// matches when every field it gives matches (methods, paths, path
// prefixes, hosts, sources, when). A rule without any condition matches
// every request, so it may only be the last one. An authz with no rules
// applies Default to every request ("deny all" by default).
func (c *compiler) authzStep(path, policy string, spec *Authz) middleware {
	if spec == nil || c.doc.Bad(path) {
		return nil
	}
	ap := &authzPolicy{policy: policy}
	ok := true
	switch spec.Default {
	case "":
		spec.Default = authzDeny
	case authzDeny:
	case authzAllow:
		ap.defaultAllow = true
	default:
		c.errorf(config.Field(path, "default"), "%q is not a decision; want deny or allow", spec.Default)
		ok = false
	}
	rulesPath := config.Field(path, "rules")
	names := make(map[string]int, len(spec.Rules))
	catchAll, seenCatchAll := "", false
	for i := range spec.Rules {
		rp := config.Index(rulesPath, i)
		rule, rok := c.authzRule(rp, &spec.Rules[i])
		ok = ok && rok
		if name := spec.Rules[i].Name; name != "" {
			if first, dup := names[name]; dup {
				c.errorf(config.Field(rp, "name"), "duplicate rule name %q; first defined at %s:%d", name, c.file, c.line(config.Field(config.Index(rulesPath, first), "name")))
				ok = false
			} else {
				names[name] = i
			}
		}
		if seenCatchAll {
			c.errorf(rp, "rule %q can never match: rule %q before it has no conditions and matches every request", spec.Rules[i].Name, catchAll)
			ok = false
		} else if rok && rule.catchAll() {
			catchAll, seenCatchAll = spec.Rules[i].Name, true
		}
		ap.rules = append(ap.rules, rule)
	}
	if !ok {
		return nil
	}
	return ap.middleware
}

// authzRule checks and compiles one rule; ok is false when it has a
// problem (reported).
func (c *compiler) authzRule(path string, spec *Rule) (authzRule, bool) {
	if c.doc.Bad(path) {
		return authzRule{}, false
	}
	ok := true
	namePath := config.Field(path, "name")
	switch {
	case spec.Name == "":
		c.errorf(namePath, "required")
		ok = false
	case !namePattern.MatchString(spec.Name):
		c.errorf(namePath, "%q is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit", spec.Name)
		ok = false
	}
	r := authzRule{name: spec.Name}
	switch spec.Action {
	case "":
		spec.Action = authzAllow
		r.allow = true
	case authzAllow:
		r.allow = true
	case authzDeny:
	default:
		c.errorf(config.Field(path, "action"), "%q is not an action; want allow or deny", spec.Action)
		ok = false
	}
	r.sel = c.requestSelector(path, spec.Hosts, spec.PathPrefixes, spec.Paths, spec.Methods)
	// requestSelector reports its own problems and leaves bad items out.
	given := len(spec.Hosts) + len(spec.PathPrefixes) + len(spec.Paths) + len(spec.Methods)
	kept := len(r.sel.hosts.exact) + len(r.sel.hosts.suffixes) + len(r.sel.prefixes) + len(r.sel.paths) + len(r.sel.methods)
	if kept != given {
		ok = false
	}
	for i, s := range spec.Sources {
		p, err := parsePrefix(s)
		if err != nil {
			c.errorf(config.Index(config.Field(path, "sources"), i), "%v", err)
			ok = false
			continue
		}
		r.sources = append(r.sources, p)
	}
	if spec.When != "" {
		whenPath := config.Field(path, "when")
		cond, problems := compileCEL(spec.When)
		for _, p := range problems {
			c.errorAt(c.celLine(whenPath, spec.When, p.line), whenPath, p.msg)
			ok = false
		}
		r.when = cond
	}
	return r, ok
}

// celLine places line n (1-based) of a "when" expression in the file.
// A one-line expression (`when: expr`) is on the key's line. An
// expression with a line break was written as a block scalar
// (`when: |` or `when: >`), whose text starts on the line after the
// key's, so its line n is n lines below the key. Only the literal form
// `|` keeps the expression's lines as written: `>` folds them into one,
// whose problems are placed on the first line, and a single-line block
// scalar written with `|-` or `>-` has no line break at all, so its
// problems are placed on the key's line, one above the text. Columns are
// counted in the expression's line, not the file's.
func (c *compiler) celLine(path, expr string, n int) int {
	key := c.line(path)
	if !strings.Contains(expr, "\n") {
		return key
	}
	return key + n
}

// catchAll reports whether the rule has no condition at all.
func (r *authzRule) catchAll() bool {
	return r.sel.empty() && len(r.sources) == 0 && r.when == nil
}

// match reports whether the request matches every condition of the rule;
// err is a failure to evaluate its when, which counts as no match.
func (r *authzRule) match(req *http.Request, st *requestState) (bool, error) {
	if !r.sel.match(req) {
		return false, nil
	}
	if len(r.sources) > 0 {
		ip := st.clientIP
		if !slices.ContainsFunc(r.sources, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return false, nil
		}
	}
	if r.when != nil {
		return r.when.eval(req, st)
	}
	return true, nil
}

// middleware is the step.
func (ap *authzPolicy) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		allow, rule := ap.defaultAllow, authzDefaultRule
		for i := range ap.rules {
			ru := &ap.rules[i]
			m, err := ru.match(r, st)
			if err != nil {
				// A when that cannot be evaluated fails closed: an allow
				// rule does not match, a deny rule does (otherwise a deny
				// on a claim the token lacks would fall through to a later
				// allow). It is counted so that a rule broken by its input
				// shows up.
				st.observe(r, ap.policy, StepAuthz, "error")
				if lg := authzLogger(st); lg != nil {
					lg.DebugContext(r.Context(), "authz rule condition failed",
						"policy", ap.policy, "rule", ru.name, "deny_rule_matches", !ru.allow, "error", err.Error())
				}
				if ru.allow {
					continue
				}
				m = true
			}
			if m {
				allow, rule = ru.allow, ru.name
				break
			}
		}
		decision := authzDeny
		if allow {
			decision = authzAllow
		}
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetAttributes(
				attribute.String("meshgate.authz.rule", rule),
				attribute.String("meshgate.authz.decision", decision),
			)
		}
		st.observe(r, ap.policy, StepAuthz, decision)
		if allow {
			next.ServeHTTP(w, r)
			return
		}
		if lg := authzLogger(st); lg != nil {
			client := ""
			if st.clientIP.IsValid() {
				client = st.clientIP.String()
			}
			lg.InfoContext(r.Context(), "request denied by authz policy",
				"policy", ap.policy, "rule", rule, "method", r.Method, "path", r.URL.Path, "client", client)
		}
		reject(w, r, http.StatusForbidden, "forbidden by policy")
	})
}

// authzLogger is the logger of the request's environment, or nil.
func authzLogger(st *requestState) *slog.Logger {
	if st.env == nil {
		return nil
	}
	return st.env.Logger
}
