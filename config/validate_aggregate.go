package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/itchyny/gojq"
)

// This file validates a route's aggregate: its parts, the graph of their
// needs and their jq path expressions.

// partName is the syntax of an aggregate part's name: an identifier jq
// can write as .parts.name.
var partName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// aggregateRoute checks an aggregate route: what it must not have (a
// service and the fields that only apply to forwarding) and its
// aggregate.
func (v *validator) aggregateRoute(r *Route, p fpath) {
	if r.Service != "" {
		v.addf(p.field("service"), "service and aggregate are mutually exclusive; a route either forwards to a service or aggregates parts")
	}
	if r.StripPrefix {
		v.addf(p.field("strip_prefix"), "does not apply to an aggregate route; each part's path is what it calls")
	}
	if r.RewritePrefix != "" {
		v.addf(p.field("rewrite_prefix"), "does not apply to an aggregate route; each part's path is what it calls")
	}
	if r.RetryNonIdempotent {
		v.addf(p.field("retry_non_idempotent"), "does not apply to an aggregate route; its parts are GET requests")
	}
	if r.Timeout != 0 {
		v.addf(p.field("timeout"), "does not apply to an aggregate route; set aggregate.timeout")
	}
	v.aggregate(r.Aggregate, p.field("aggregate"))
}

func (v *validator) aggregate(a *Aggregate, p fpath) {
	tp := p.field("timeout")
	aggOK := v.positiveUpTo(tp, a.Timeout, MaxAggregateTimeout)
	pp := p.field("parts")
	if len(a.Parts) == 0 {
		v.addf(pp, "at least one part is required, such as {name: order, path: '\"/orders/\" + .request.segments[2]'}")
		return
	}
	index := make(map[string]int, len(a.Parts))
	for i, part := range a.Parts {
		np := pp.index(i).field("name")
		switch first, dup := index[part.Name]; {
		case part.Name == "":
			v.missing(np, "a name such as order: a lower-case letter or _, then lower-case letters, digits and _")
		case !partName.MatchString(part.Name):
			v.addf(np, "invalid part name %q; want a lower-case letter or _, then lower-case letters, digits and _; jq reads it as .parts.<name>", part.Name)
		case dup:
			v.addf(np, "duplicate part name %q, already used by %s; names must be unique in the route", part.Name, pp.index(first).field("name"))
		default:
			index[part.Name] = i
		}
	}
	for i, part := range a.Parts {
		ip := pp.index(i)
		seen := make(map[string]int, len(part.Needs))
		for j, need := range part.Needs {
			jp := ip.field("needs").index(j)
			_, known := index[need]
			switch first, dup := seen[need]; {
			case need == part.Name:
				v.addf(jp, "part %q cannot need itself", need)
			case dup:
				v.addf(jp, "duplicate need %q, already at %s; list each part once", need, ip.field("needs").index(first))
			case !known:
				v.addf(jp, "unknown part %q; %s", need, partsOf(a))
			default:
				seen[need] = j
			}
		}
		if part.Path == "" {
			v.missing(ip.field("path"), `a jq expression giving the path to call, such as '"/users/\(.parts.order.user_id)"'`)
		} else if _, err := CompileAggregatePath(part.Path); err != nil {
			v.addf(ip.field("path"), "%v", err)
		}
		partTP := ip.field("timeout")
		if !aggOK && v.defaulted(partTP) != "" {
			continue // copied from the aggregate's bad timeout, reported already
		}
		if v.positiveUpTo(partTP, part.Timeout, MaxAggregateTimeout) && aggOK && part.Timeout > a.Timeout {
			v.addf(partTP, "%s is longer than %s, which is %s%s; a call cannot outlast its aggregate",
				durText(part.Timeout), tp, durText(a.Timeout), v.defaulted(tp))
		}
	}
	for _, cycle := range needCycles(a, index) {
		v.addf(pp.index(index[cycle[0]]).field("needs"), "parts need each other in a cycle: %s; no part of it could ever run", strings.Join(cycle, " → "))
	}
}

// partsOf lists an aggregate's part names for an "unknown part" message.
func partsOf(a *Aggregate) string {
	names := make([]string, 0, len(a.Parts))
	for _, p := range a.Parts {
		if p.Name != "" && !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	return "parts of this aggregate: " + strings.Join(names, ", ")
}

// needCycles returns each cycle of the needs graph once, as the names
// along it with the first repeated at the end, starting from the part
// declared first. Self-needs are reported elsewhere and skipped here.
func needCycles(a *Aggregate, index map[string]int) [][]string {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(a.Parts))
	var stack []int
	var cycles [][]string
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for _, need := range a.Parts[i].Needs {
			j, ok := index[need]
			if !ok || j == i {
				continue
			}
			switch state[j] {
			case unvisited:
				visit(j)
			case onStack:
				// The cycle is the stack from j to the top; report it from
				// its earliest declared part so that it reads the same
				// whichever part the walk began at.
				k := len(stack) - 1
				for stack[k] != j {
					k--
				}
				loop := stack[k:]
				start := 0
				for n, idx := range loop {
					if idx < loop[start] {
						start = n
					}
				}
				names := make([]string, 0, len(loop)+1)
				for n := range loop {
					names = append(names, a.Parts[loop[(start+n)%len(loop)]].Name)
				}
				cycles = append(cycles, append(names, names[0]))
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i := range a.Parts {
		if state[i] == unvisited {
			visit(i)
		}
	}
	return cycles
}

// CompileAggregatePath parses and compiles a part's jq path expression
// (gojq). The error names gojq's complaint and, for a syntax error, the
// byte offset in the expression where it was found.
func CompileAggregatePath(src string) (*gojq.Code, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("invalid jq expression: %v at offset %d; want an expression giving a path such as '\"/users/\\(.parts.order.user_id)\"'", err, pe.Offset)
		}
		return nil, fmt.Errorf("invalid jq expression: %v", err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, fmt.Errorf("jq expression does not compile: %v", err)
	}
	return code, nil
}
