package policies

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestCELCompileErrors checks that a bad "when" is reported at load with
// the file, the line of the offending CEL line and the column, for the
// one-line and the block-scalar forms.
func TestCELCompileErrors(t *testing.T) {
	t.Parallel()
	// Lines: 1 policies, 2 name, 3 applies_to, 4 authz, 5 rules, 6 - name,
	// 7 when.
	tests := []struct {
		name string
		when string // the YAML after "when:", starting on line 7
		want []string
	}{
		{
			name: "misspelt request field, one line",
			when: ` request.methd == "GET"`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: undefined field 'methd' (column 8)`},
		},
		{
			name: "misspelt auth field",
			when: ` auth.princpal == "alice"`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: undefined field 'princpal' (column 5)`},
		},
		{
			name: "undeclared variable",
			when: ` user.role == "admin"`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: undeclared reference to 'user' (in container '') (column 1)`},
		},
		{
			name: "not a bool",
			when: ` request.method`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: the expression has type string; want bool`},
		},
		{
			name: "not a bool: a claim is dyn, not bool",
			when: ` claims.admin`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: the expression has type dyn; want bool`},
		},
		{
			name: "wrong operand types",
			when: ` request.method == 1`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: found no matching overload for '_==_' applied to '(string, int)' (column 16)`},
		},
		{
			name: "syntax error, one line",
			when: ` 'request.method == "GET" &&'`,
			want: []string{`p.yaml:7: policies[0].authz.rules[0].when: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} (column 27)`},
		},
		{
			name: "block scalar: error on the third line",
			when: " |\n            request.method == \"GET\" &&\n            claims.role == \"admin\" &&\n            request.hedaers[\"x\"] == \"y\"\n",
			want: []string{`p.yaml:10: policies[0].authz.rules[0].when: undefined field 'hedaers' (column 8)`},
		},
		{
			name: "block scalar: error on the first line",
			when: " |\n            nope == 1\n",
			want: []string{`p.yaml:8: policies[0].authz.rules[0].when: undeclared reference to 'nope' (in container '') (column 1)`},
		},
		{
			// ">" folds the lines into one before CEL sees them, so a
			// problem is placed on the first line, with the column in the
			// folded text; "|" keeps lines apart.
			name: "folded block scalar",
			when: " >\n            request.path == \"/\" &&\n            sorce.address == \"::1\"\n",
			want: []string{`p.yaml:8: policies[0].authz.rules[0].when: undeclared reference to 'sorce' (in container '') (column 24)`},
		},
		{
			name: "two errors on two lines",
			when: " |\n            request.methd == \"GET\" ||\n            route.nam == \"r\"\n",
			want: []string{
				`p.yaml:8: policies[0].authz.rules[0].when: undefined field 'methd' (column 8)`,
				`p.yaml:9: policies[0].authz.rules[0].when: undefined field 'nam' (column 6)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			yaml := "policies:\n  - name: pol\n    applies_to: {all: true}\n    authz:\n      rules:\n        - name: r\n          when:" + tt.when + "\n"
			got := authzErrors(t, yaml)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestCELVariablesTypeCheck checks that every documented field is
// declared with its type: expressions using each compile.
func TestCELVariablesTypeCheck(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{
		`request.method == "GET" && request.path == "/" && request.host == "h" && request.scheme == "https"`,
		`request.headers["x"] == "y" && request.query["q"] == "1"`,
		`"x" in request.headers && size(request.query) == 0`,
		`source.address.startsWith("10.")`,
		`auth.method == "jwt" && auth.principal == "alice"`,
		`has(claims.role) && claims.role == "admin" && claims.level > 3`,
		`route.name == "r" && route.service == "s"`,
		`request.headers.exists(k, k.startsWith("x-"))`,
		`request.headers["x"].lowerAscii() == "y"`,
	} {
		if _, problems := compileCEL(expr); problems != nil {
			t.Errorf("%s: %v", expr, problems)
		}
	}
}

// TestCELNeeds checks which inputs an expression is found to read, so
// that rules that do not read headers do not build the header map.
func TestCELNeeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want celNeeds
	}{
		{`request.method == "GET"`, celNeeds{request: true}},
		{`claims.role == "admin"`, celNeeds{claims: true}},
		{`request.headers["x"] == "y"`, celNeeds{request: true, headers: true}},
		{`has(request.query.debug)`, celNeeds{request: true, query: true}},
		{`source.address == "::1" && auth.principal == "a" && route.name == "r"`, celNeeds{source: true, auth: true, route: true}},
		// request used whole: every field is built.
		{`[request][0].method == "GET"`, celNeeds{request: true, headers: true, query: true}},
	}
	for _, tt := range tests {
		cond, problems := compileCEL(tt.expr)
		if problems != nil {
			t.Fatalf("%s: %v", tt.expr, problems)
		}
		if cond.needs != tt.want {
			t.Errorf("%s: needs %+v; want %+v", tt.expr, cond.needs, tt.want)
		}
	}
}

// TestCELLazyRequest checks that the header and query maps are built only
// for expressions that read them, and that whole-request use still sees
// them.
func TestCELLazyRequest(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "http://h/p?debug=1", nil)
	r.Header.Set("X-Team", "blue")
	st := &requestState{}
	for _, tt := range []struct {
		expr                   string
		wantHeaders, wantQuery bool
	}{
		{`request.method == "GET"`, false, false},
		{`request.headers["x-team"] == "blue"`, true, false},
		{`request.query["debug"] == "1"`, false, true},
		{`[request][0].headers["x-team"] == "blue" && [request][0].query["debug"] == "1"`, true, true},
	} {
		cond, problems := compileCEL(tt.expr)
		if problems != nil {
			t.Fatalf("%s: %v", tt.expr, problems)
		}
		a := &celActivation{r: r, st: st, needs: cond.needs, cond: cond}
		if _, ok := a.ResolveName(celVarRequest); !ok {
			t.Fatal("request not resolved")
		}
		if (a.request.Headers != nil) != tt.wantHeaders || (a.request.Query != nil) != tt.wantQuery {
			t.Errorf("%s: headers built %t, query built %t; want %t, %t", tt.expr, a.request.Headers != nil, a.request.Query != nil, tt.wantHeaders, tt.wantQuery)
		}
		got, err := cond.eval(r, st)
		if err != nil || !got {
			t.Errorf("%s: eval = %t, %v; want true", tt.expr, got, err)
		}
	}
}

// TestCELEval checks evaluation results and errors directly.
func TestCELEval(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "http://API.Example.com:8080/v1/x?a=1&a=2", nil)
	r.Header.Add("X-Tag", "a")
	r.Header.Add("X-Tag", "b")
	st := &requestState{
		route:    RouteInfo{Name: "r", Service: "s"},
		identity: Identity{Method: "jwt", Principal: "alice", Claims: map[string]any{"role": "admin", "level": float64(4), "groups": []any{"ops"}}},
		clientIP: netip.MustParseAddr("10.0.0.1"),
	}
	anon := &requestState{}
	tests := []struct {
		expr    string
		st      *requestState
		want    bool
		wantErr bool
	}{
		{expr: `request.method == "POST"`, st: st, want: true},
		{expr: `request.host == "api.example.com"`, st: st, want: true},
		{expr: `request.path == "/v1/x"`, st: st, want: true},
		{expr: `request.scheme == "http"`, st: st, want: true},
		{expr: `request.headers["x-tag"] == "a, b"`, st: st, want: true},
		{expr: `request.query["a"] == "1"`, st: st, want: true},
		{expr: `source.address == "10.0.0.1"`, st: st, want: true},
		{expr: `auth.method == "jwt" && auth.principal == "alice"`, st: st, want: true},
		{expr: `claims.level >= 4.0 && "ops" in claims.groups`, st: st, want: true},
		{expr: `route.name == "r" && route.service == "s"`, st: st, want: true},
		{expr: `claims.missing == "x"`, st: st, wantErr: true},
		{expr: `request.headers["absent"] == "x"`, st: st, wantErr: true},
		{expr: `claims.role == "admin"`, st: anon, wantErr: true},
		{expr: `has(claims.role)`, st: anon, want: false},
		{expr: `size(claims) == 0 && auth.method == "" && source.address == ""`, st: anon, want: true},
	}
	for _, tt := range tests {
		cond, problems := compileCEL(tt.expr)
		if problems != nil {
			t.Fatalf("%s: %v", tt.expr, problems)
		}
		got, err := cond.eval(r, tt.st)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: %t, %v; want %t, error %t", tt.expr, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestCELCostLimit checks that a runaway expression stops at the cost
// limit with an error instead of holding the request.
func TestCELCostLimit(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "http://h/", nil)
	for i := range 200 {
		r.Header.Set("X-H"+strings.Repeat("a", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26)), "v")
	}
	expr := `request.headers.all(a, request.headers.all(b, request.headers.all(c, a + b + c != "")))`
	cond, problems := compileCEL(expr)
	if problems != nil {
		t.Fatal(problems)
	}
	if !cond.limited {
		t.Fatal("a nested comprehension runs without the cost limit")
	}
	_, err := cond.eval(r, &requestState{})
	if err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("eval error %v; want the cost limit exceeded", err)
	}
}

// TestCELCostTracking checks which expressions run with the cost limit:
// those that could run away, and only those.
func TestCELCostTracking(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string]bool{
		`claims.role == "admin" && request.method == "GET"`:            false,
		`request.path.startsWith("/api/") && "x" in request.headers`:   false,
		`request.headers["x"].matches("^[a-z]+$")`:                     false,
		`request.headers.exists(k, k.startsWith("x-"))`:                true,
		`[1, 2].all(i, i > 0)`:                                         true,
		`request.headers["a"].replace("", request.headers["b"]) != ""`: true,
		`request.path.split("/").size() > 2`:                           true,
		`"%s".format([request.path]) != ""`:                            true,
	} {
		cond, problems := compileCEL(expr)
		if problems != nil {
			t.Fatalf("%s: %v", expr, problems)
		}
		if cond.limited != want {
			t.Errorf("%s: cost limited %t; want %t", expr, cond.limited, want)
		}
	}
}

// TestCELEnvOnce checks that the environment is built once and reused.
func TestCELEnvOnce(t *testing.T) {
	t.Parallel()
	a, err := celEnvironment()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := celEnvironment()
	if a != b {
		t.Error("celEnvironment built two environments")
	}
}

// TestCELConcurrentEval evaluates one condition from many goroutines, for
// the race detector: activations are pooled and must not be shared.
func TestCELConcurrentEval(t *testing.T) {
	t.Parallel()
	cond, problems := compileCEL(`request.headers["x-n"] == auth.principal`)
	if problems != nil {
		t.Fatal(problems)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			n := string(rune('a' + g))
			r := httptest.NewRequest(http.MethodGet, "http://h/", nil).WithContext(ctx)
			r.Header.Set("X-N", n)
			st := &requestState{identity: Identity{Principal: n}}
			for range 500 {
				if ok, err := cond.eval(r, st); !ok || err != nil {
					errs <- errors.New("wrong result under concurrency")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzCELCompile feeds arbitrary expressions to the compiler: it must
// report problems, never panic.
func FuzzCELCompile(f *testing.F) {
	f.Add(`claims.role == "admin"`)
	f.Add("request.headers.all(k, k != \"\")\n&& true")
	f.Add(`request.methd`)
	f.Fuzz(func(t *testing.T, expr string) {
		cond, problems := compileCEL(expr)
		if (cond == nil) == (problems == nil) {
			t.Fatalf("%q: cond %v, problems %v", expr, cond, problems)
		}
		for _, p := range problems {
			if p.line < 1 || strings.Contains(p.msg, "\n") {
				t.Fatalf("%q: bad problem %+v", expr, p)
			}
		}
	})
}
