package policies

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// The CEL environment of authz rules' "when" expressions. Every variable
// has a declared type, so that a misspelt field (request.methd) or a
// comparison of the wrong types is an error when the policy is loaded,
// not a rule that silently never matches:
//
//	request.method   string, upper case ("GET")
//	request.path     string, the normalised path
//	request.host     string, without the port, lower case
//	request.scheme   string, "http" or "https"
//	request.headers  map(string, string): lower-case names; the values of
//	                 a repeated header joined with ", "
//	request.query    map(string, string): the first value of each parameter
//	source.address   string, the client address meshgate trusts
//	auth.method      string: "jwt", "api_key", or "" when anonymous
//	auth.principal   string: the JWT's "sub" or the API key's name
//	claims           map(string, dyn): the JWT's claims; empty without one
//	route.name       string
//	route.service    string
//
// The standard CEL library and the cel-go strings extension
// (lowerAscii, split, ...) are available.
//
// Evaluation errors: an expression that fails at run time (a missing map
// key such as claims.role when the token has no "role" claim, a
// headers["x-team"] the request lacks, a cost above the limit) fails
// closed: an allow rule does not match, a deny rule does. The failure is
// counted as the decision "error" and logged at debug level. Write
// has(claims.role) && claims.role == "admin", or "x-team" in
// request.headers, to test for presence.

// celCostLimit bounds the work of one evaluation (roughly the number of
// operations), so that a comprehension over a large header map cannot
// hold a request for long. Typical rules cost well under 100.
//
// Tracking the cost is itself the bulk of an evaluation's allocations,
// so it is enabled only for expressions that could run away: those with
// a comprehension (all, exists, exists_one, map, filter) or a call whose
// result can be much larger than its input (replace, format, join,
// split). Any other expression does a bounded number of operations, each
// linear in the size of the request, and runs without tracking.
const celCostLimit = 100_000

// celUnboundedFuncs are the functions that make an expression's cost
// tracked.
var celUnboundedFuncs = [...]string{"replace", "format", "join", "split"}

// CEL variable types. They are declared to CEL through ext.NativeTypes;
// the cel struct tags give the field names expressions use.
type (
	celRequest struct {
		Method  string            `cel:"method"`
		Path    string            `cel:"path"`
		Host    string            `cel:"host"`
		Scheme  string            `cel:"scheme"`
		Headers map[string]string `cel:"headers"`
		Query   map[string]string `cel:"query"`
	}
	celSource struct {
		Address string `cel:"address"`
	}
	celAuth struct {
		Method    string `cel:"method"`
		Principal string `cel:"principal"`
	}
	celRoute struct {
		Name    string `cel:"name"`
		Service string `cel:"service"`
	}
)

// CEL variable names.
const (
	celVarRequest = "request"
	celVarSource  = "source"
	celVarAuth    = "auth"
	celVarClaims  = "claims"
	celVarRoute   = "route"
)

// celEnvironment is the one environment every expression is checked in;
// a cel.Env is immutable and safe for concurrent use once built.
var celEnvironment = sync.OnceValues(newCELEnv)

func newCELEnv() (*cel.Env, error) {
	objType := func(v any) *cel.Type {
		t := reflect.TypeOf(v)
		return cel.ObjectType(fmt.Sprintf("policies.%s", t.Name()))
	}
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[celRequest](),
			reflect.TypeFor[celSource](),
			reflect.TypeFor[celAuth](),
			reflect.TypeFor[celRoute](),
			ext.ParseStructTags(true),
		),
		ext.Strings(),
		cel.Variable(celVarRequest, objType(celRequest{})),
		cel.Variable(celVarSource, objType(celSource{})),
		cel.Variable(celVarAuth, objType(celAuth{})),
		cel.Variable(celVarClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(celVarRoute, objType(celRoute{})),
	)
}

// celProblem is one problem of an expression: its line within the
// expression (1-based) and a one-line message that gives the column.
type celProblem struct {
	line int
	msg  string
}

// celNeeds says which inputs an expression reads, so that a request
// builds only those: most rules never touch headers or the query, and
// building their maps is the bulk of the work.
type celNeeds struct {
	request, headers, query, source, auth, claims, route bool
}

// celCond is a compiled "when" expression.
type celCond struct {
	prg cel.Program
	// limited: the program tracks its cost and stops at celCostLimit.
	limited bool
	needs   celNeeds
	// noClaims stands for claims when the request has no JWT; it is
	// never written to.
	noClaims map[string]any
}

// compileCEL parses, type-checks and plans expr. On failure it returns
// the problems, each placed on a line of expr.
func compileCEL(expr string) (*celCond, []celProblem) {
	env, err := celEnvironment()
	if err != nil {
		// The declarations are fixed; this is a programming error, but
		// it is reported rather than panicking.
		return nil, []celProblem{{line: 1, msg: fmt.Sprintf("building the CEL environment: %v", err)}}
	}
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		var out []celProblem
		for _, e := range iss.Errors() {
			line := max(e.Location.Line(), 1)
			out = append(out, celProblem{line: line, msg: fmt.Sprintf("%s (column %d)", oneLineCEL(e.Message), e.Location.Column()+1)})
		}
		return nil, out
	}
	if t := checked.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, []celProblem{{line: 1, msg: fmt.Sprintf("the expression has type %s; want bool", cel.FormatCELType(t))}}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	limited := celMayRunAway(checked.NativeRep())
	if limited {
		opts = append(opts, cel.CostLimit(celCostLimit))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, []celProblem{{line: 1, msg: oneLineCEL(err.Error())}}
	}
	return &celCond{prg: prg, limited: limited, needs: celNeedsOf(checked.NativeRep()), noClaims: map[string]any{}}, nil
}

// oneLineCEL folds a CEL message onto one line.
func oneLineCEL(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// celNeedsOf walks a checked expression for the variables it reads.
// request.headers and request.query are needed only when selected by
// name; request used any other way (passed whole to a function or a
// comprehension) needs every field.
func celNeedsOf(a *celast.AST) celNeeds {
	var n celNeeds
	selected := 0
	idents := 0
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			switch e.AsIdent() {
			case celVarRequest:
				n.request = true
				idents++
			case celVarSource:
				n.source = true
			case celVarAuth:
				n.auth = true
			case celVarClaims:
				n.claims = true
			case celVarRoute:
				n.route = true
			}
		case celast.SelectKind:
			sel := e.AsSelect()
			if op := sel.Operand(); op.Kind() == celast.IdentKind && op.AsIdent() == celVarRequest {
				selected++
				switch sel.FieldName() {
				case "headers":
					n.headers = true
				case "query":
					n.query = true
				}
			}
		}
	}))
	if idents > selected {
		n.headers, n.query = true, true
	}
	return n
}

// celMayRunAway reports whether a checked expression could do work out
// of proportion to its size and input: it has a comprehension or calls
// one of celUnboundedFuncs.
func celMayRunAway(a *celast.AST) bool {
	found := false
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.ComprehensionKind:
			found = true
		case celast.CallKind:
			if slices.Contains(celUnboundedFuncs[:], e.AsCall().FunctionName()) {
				found = true
			}
		}
	}))
	return found
}

// celActivation resolves the variables of one evaluation, building each
// on first use. Activations are pooled; one is used by one goroutine.
type celActivation struct {
	r     *http.Request
	st    *requestState
	needs celNeeds
	cond  *celCond

	resolved uint8 // bit per variable built
	request  celRequest
	source   celSource
	auth     celAuth
	route    celRoute
}

var _ interpreter.Activation = (*celActivation)(nil)

var celActivations = sync.Pool{New: func() any { return new(celActivation) }}

const (
	resolvedRequest uint8 = 1 << iota
	resolvedSource
	resolvedAuth
	resolvedRoute
)

// ResolveName implements interpreter.Activation.
func (a *celActivation) ResolveName(name string) (any, bool) {
	switch name {
	case celVarRequest:
		if a.resolved&resolvedRequest == 0 {
			a.resolved |= resolvedRequest
			a.fillRequest()
		}
		return &a.request, true
	case celVarSource:
		if a.resolved&resolvedSource == 0 {
			a.resolved |= resolvedSource
			if a.st.clientIP.IsValid() {
				a.source.Address = a.st.clientIP.String()
			}
		}
		return &a.source, true
	case celVarAuth:
		if a.resolved&resolvedAuth == 0 {
			a.resolved |= resolvedAuth
			a.auth = celAuth{Method: a.st.identity.Method, Principal: a.st.identity.Principal}
		}
		return &a.auth, true
	case celVarClaims:
		if c := a.st.identity.Claims; c != nil {
			return c, true
		}
		return a.cond.noClaims, true
	case celVarRoute:
		if a.resolved&resolvedRoute == 0 {
			a.resolved |= resolvedRoute
			a.route = celRoute{Name: a.st.route.Name, Service: a.st.route.Service}
		}
		return &a.route, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *celActivation) Parent() interpreter.Activation { return nil }

func (a *celActivation) fillRequest() {
	r := a.r
	a.request.Method = r.Method
	a.request.Path = r.URL.Path
	a.request.Host = requestHost(r.Host)
	a.request.Scheme = requestScheme(r)
	if a.needs.headers {
		h := make(map[string]string, len(r.Header))
		for k, vs := range r.Header {
			h[strings.ToLower(k)] = strings.Join(vs, ", ")
		}
		a.request.Headers = h
	}
	if a.needs.query {
		q := make(map[string]string)
		for k, vs := range r.URL.Query() {
			if len(vs) > 0 {
				q[k] = vs[0]
			}
		}
		a.request.Query = q
	}
}

// requestHost is the request's host without the port, lower case.
func requestHost(host string) string {
	host = strings.TrimSuffix(hostWithoutPort(host), ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// requestScheme is "https" for a request that came over TLS (or whose
// URL says so), else "http".
func requestScheme(r *http.Request) string {
	if r.TLS != nil || r.URL.Scheme == "https" {
		return "https"
	}
	return "http"
}

// errCELNotBool is the evaluation error of a result that is not a bool,
// which the type check makes impossible short of a dyn value.
var errCELNotBool = errors.New("the expression did not evaluate to a bool")

// eval evaluates the condition for a request. An error means the
// condition does not hold.
func (c *celCond) eval(r *http.Request, st *requestState) (bool, error) {
	a := celActivations.Get().(*celActivation)
	a.r, a.st, a.needs, a.cond = r, st, c.needs, c
	out, _, err := c.prg.Eval(a)
	*a = celActivation{}
	celActivations.Put(a)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errCELNotBool
	}
	return b, nil
}
