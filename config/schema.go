package config

import (
	"embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
)

// typeSources holds the Go files that declare the configuration types, so
// that Schema can turn their doc comments into descriptions at run time
// without the source tree.
//
//go:embed types.go units.go
var typeSources embed.FS

// Schema returns the JSON Schema (draft 2020-12) of the configuration
// file, generated from the Go types: property names are the YAML keys,
// descriptions are the fields' doc comments, unknown keys are rejected
// (additionalProperties: false) and required keys, enums, ranges and the
// simpler cross-field rules are included. Editors use it for completion
// and checks; the loader's validation is the authority and checks more
// (addresses, files, references between routes and services), and it
// accepts null values, which it reads as "unset", where the schema does
// not.
//
// The same schema is committed as config/meshgate.schema.json.
func Schema() ([]byte, error) {
	return GenerateSchema(&Config{}, "meshgate configuration", typeSources, refineSchema)
}

// GenerateSchema returns the JSON Schema (draft 2020-12) of the YAML file
// format whose root type is v's: property names are the YAML keys,
// descriptions the doc comments of the Go declarations in sources (the
// package's type files, embedded), and unknown keys are rejected. refine,
// when not nil, adds what struct tags cannot say. Other packages with file
// formats (policies) generate their schemas with it.
func GenerateSchema(v any, title string, sources fs.ReadDirFS, refine func(*jsonschema.Schema) error) ([]byte, error) {
	comments, err := typeComments(sources, reflect.TypeOf(v).Elem().PkgPath())
	if err != nil {
		return nil, fmt.Errorf("generating schema: %w", err)
	}
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Anonymous:                  true,
		ExpandedStruct:             true,
		CommentMap:                 comments,
	}
	s := r.Reflect(v)
	s.Title = title
	if refine != nil {
		if err := refine(s); err != nil {
			return nil, fmt.Errorf("generating schema: %w", err)
		}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("generating schema: %w", err)
	}
	return append(b, '\n'), nil
}

// typeComments reads the doc comments of the type declarations in sources
// into the key scheme of jsonschema.Reflector.CommentMap:
// "<package path>.<Type>" and "<package path>.<Type>.<Field>".
func typeComments(sources fs.ReadDirFS, pkg string) (map[string]string, error) {
	entries, err := sources.ReadDir(".")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	fset := token.NewFileSet()
	for _, e := range entries {
		src, err := fs.ReadFile(sources, e.Name())
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, e.Name(), src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if !ts.Name.IsExported() {
					continue
				}
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				if text := description(doc); text != "" {
					out[pkg+"."+ts.Name.Name] = text
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, field := range st.Fields.List {
					text := description(field.Doc)
					if text == "" {
						text = description(field.Comment)
					}
					for _, name := range field.Names {
						if name.IsExported() && text != "" {
							out[pkg+"."+ts.Name.Name+"."+name.Name] = text
						}
					}
				}
			}
		}
	}
	return out, nil
}

// description turns a doc comment into a schema description: lines of a
// paragraph are joined, paragraphs kept apart.
func description(cg *ast.CommentGroup) string {
	text := strings.TrimSpace(cg.Text())
	if text == "" {
		return ""
	}
	paras := strings.Split(text, "\n\n")
	for i, p := range paras {
		paras[i] = strings.Join(strings.Fields(p), " ")
	}
	return strings.Join(paras, "\n\n")
}

// schemaDefaults are the defaults shown to editors, by definition and
// property; they come from the same constants SetDefaults uses.
func schemaDefaults() map[string]map[string]any {
	return map[string]map[string]any{
		"Admin": {"address": DefaultAdminAddress},
		"Server": {
			"read_header_timeout": DefaultReadHeaderTimeout.String(),
			"idle_timeout":        DefaultIdleTimeout.String(),
			"max_header_bytes":    DefaultMaxHeaderBytes.String(),
			"max_body_bytes":      DefaultMaxBodyBytes.String(),
			"trusted_hops":        0,
			"drain_delay":         DefaultDrainDelay.String(),
			"grace_period":        DefaultGracePeriod.String(),
		},
		"PathNormalization": {"escaped_slashes": DefaultEscapedSlashes},
		"Redis":             {"timeout": DefaultRedisTimeout.String(), "db": 0},
		"Listener":          {"max_concurrent_requests": 0},
		"Service": {
			"protocol":                    DefaultProtocol,
			"max_concurrent_requests":     0,
			"max_idle_conns_per_instance": DefaultMaxIdleConnsPerInstance,
		},
		"Retry": {
			"attempts":        DefaultRetryAttempts,
			"statuses":        DefaultRetryStatuses(),
			"backoff_base":    DefaultRetryBackoffBase.String(),
			"backoff_max":     DefaultRetryBackoffMax.String(),
			"retry_after_max": DefaultRetryAfterMax.String(),
			"replay_limit":    DefaultReplayLimit.String(),
		},
		"RetryBudget": {
			"ratio":          DefaultRetryBudgetRatio,
			"min_per_second": DefaultRetryBudgetMinPerSecond,
			"window":         DefaultRetryBudgetWindow.String(),
		},
		"CircuitBreaker": {
			"disabled":             false,
			"consecutive_failures": DefaultBreakerConsecutiveFailures,
			"failure_ratio":        DefaultBreakerFailureRatio,
			"min_requests":         DefaultBreakerMinRequests,
			"window":               DefaultBreakerWindow.String(),
			"open_time":            DefaultBreakerOpenTime.String(),
			"half_open_requests":   DefaultBreakerHalfOpenRequests,
		},
		"OutlierDetection": {
			"disabled":             false,
			"consecutive_failures": DefaultOutlierConsecutiveFailures,
			"base_ejection_time":   DefaultBaseEjectionTime.String(),
			"max_ejection_time":    DefaultMaxEjectionTime.String(),
			"max_ejection_percent": DefaultMaxEjectionPercent,
		},
		"LoadBalancer":  {"policy": DefaultPolicy},
		"Route":         {"timeout": Duration(0).String(), "retry_non_idempotent": false},
		"Aggregate":     {"timeout": DefaultAggregateTimeout.String()},
		"AggregatePart": {"optional": false},
		"Timeouts": {
			"connect":         DefaultConnectTimeout.String(),
			"response_header": DefaultResponseHeaderTimeout.String(),
			"idle_conn":       DefaultIdleConnTimeout.String(),
		},
		"Instance": {"weight": DefaultWeight, "health": DefaultHealth},
		"Consul": {
			"wait":         DefaultConsulWait.String(),
			"min_interval": DefaultConsulMinInterval.String(),
			"max_backoff":  DefaultConsulMaxBackoff.String(),
		},
		"ConsulRoutes": {
			"enabled":      false,
			"tag_prefix":   DefaultConsulRouteTagPrefix,
			"meta_key":     DefaultConsulRouteMetaKey,
			"strip_prefix": false,
		},
		"Register": {
			"weight":                    DefaultRegisterWeight,
			"ttl":                       DefaultRegisterTTL.String(),
			"deregister_critical_after": DefaultDeregisterCriticalAfter.String(),
		},
		"RegisterCheck": {
			"path":     DefaultRegisterCheckPath,
			"interval": DefaultRegisterCheckInterval.String(),
			"timeout":  DefaultRegisterCheckTimeout.String(),
		},
	}
}

// refineSchema adds what struct tags cannot say: defaults, name patterns
// and the rules that tie fields together.
func refineSchema(s *jsonschema.Schema) error {
	def := func(name string) (*jsonschema.Schema, error) {
		d, ok := s.Definitions[name]
		if !ok {
			return nil, fmt.Errorf("no definition %q", name)
		}
		return d, nil
	}
	prop := func(d *jsonschema.Schema, name string) (*jsonschema.Schema, error) {
		p, ok := d.Properties.Get(name)
		if !ok {
			return nil, fmt.Errorf("no property %q", name)
		}
		return p, nil
	}
	required := func(names ...string) *jsonschema.Schema { return &jsonschema.Schema{Required: names} }

	for defName, props := range schemaDefaults() {
		d, err := def(defName)
		if err != nil {
			return err
		}
		for name, v := range props {
			p, err := prop(d, name)
			if err != nil {
				return err
			}
			p.Default = v
		}
	}

	// The root is expanded in place, so its properties are on s itself.
	services, err := prop(s, "services")
	if err != nil {
		return err
	}
	services.PropertyNames = &jsonschema.Schema{Pattern: `^[a-zA-Z0-9][a-zA-Z0-9._-]*$`}

	lb, err := def("LoadBalancer")
	if err != nil {
		return err
	}
	lb.If = &jsonschema.Schema{
		Required:   []string{"policy"},
		Properties: jsonschema.NewProperties(),
	}
	lb.If.Properties.Set("policy", &jsonschema.Schema{Const: PolicyConsistentHash})
	lb.Then = required("hash_on")
	lb.Else = &jsonschema.Schema{Not: required("hash_on")}

	hashOn, err := def("HashOn")
	if err != nil {
		return err
	}
	hashOn.OneOf = []*jsonschema.Schema{required("header"), required("cookie")}

	match, err := def("Match")
	if err != nil {
		return err
	}
	match.Not = required("path", "path_prefix")
	methods, err := prop(match, "methods")
	if err != nil {
		return err
	}
	methods.Items.Pattern = "^[!#$%&'*+.^_`|~0-9A-Z-]+$"

	// Retried statuses: 408, 429 and 500-599.
	retry, err := def("Retry")
	if err != nil {
		return err
	}
	statuses, err := prop(retry, "statuses")
	if err != nil {
		return err
	}
	statuses.Items.AnyOf = []*jsonschema.Schema{
		{Enum: []any{408, 429}},
		{Minimum: json.Number("500"), Maximum: json.Number("599")},
	}

	// register needs discovery.consul, the agent it registers with.
	registerSet := &jsonschema.Schema{Required: []string{"register"}}
	withConsul := &jsonschema.Schema{Required: []string{"discovery"}, Properties: jsonschema.NewProperties()}
	withConsul.Properties.Set("discovery", required("consul"))
	s.If, s.Then = registerSet, withConsul

	// Consul's rules for service meta keys and values.
	metaKey := &jsonschema.Schema{
		Pattern:   `^[A-Za-z0-9_-]+$`,
		MaxLength: ptr(uint64(MaxMetaKeyLength)),
		Not:       &jsonschema.Schema{Pattern: "^" + ReservedMetaPrefix},
	}
	routes, err := def("ConsulRoutes")
	if err != nil {
		return err
	}
	metaKeyProp, err := prop(routes, "meta_key")
	if err != nil {
		return err
	}
	metaKeyProp.Not = metaKey.Not
	register, err := def("Register")
	if err != nil {
		return err
	}
	meta, err := prop(register, "meta")
	if err != nil {
		return err
	}
	meta.PropertyNames = metaKey
	meta.MaxProperties = ptr(uint64(MaxMetaPairs))
	meta.AdditionalProperties = &jsonschema.Schema{Type: "string", MaxLength: ptr(uint64(MaxMetaValueLength))}

	route, err := def("Route")
	if err != nil {
		return err
	}
	stripOn := &jsonschema.Schema{Required: []string{"strip_prefix"}, Properties: jsonschema.NewProperties()}
	stripOn.Properties.Set("strip_prefix", &jsonschema.Schema{Const: true})
	retryOn := &jsonschema.Schema{Required: []string{"retry_non_idempotent"}, Properties: jsonschema.NewProperties()}
	retryOn.Properties.Set("retry_non_idempotent", &jsonschema.Schema{Const: true})
	noExactPath := &jsonschema.Schema{Properties: jsonschema.NewProperties()}
	noExactPath.Properties.Set("match", &jsonschema.Schema{Not: required("path")})
	route.AllOf = []*jsonschema.Schema{
		// strip_prefix and rewrite_prefix are exclusive.
		{Not: &jsonschema.Schema{AllOf: []*jsonschema.Schema{stripOn, required("rewrite_prefix")}}},
		// Both need a prefix match, not an exact path.
		{If: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{stripOn, required("rewrite_prefix")}}, Then: noExactPath},
		// An aggregate route calls its parts; what only applies to
		// forwarding does not apply to it.
		{If: required("aggregate"), Then: &jsonschema.Schema{Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			stripOn, required("rewrite_prefix"), retryOn,
		}}}},
	}
	// A route forwards to a service or aggregates, never both.
	route.OneOf = []*jsonschema.Schema{required("service"), required("aggregate")}
	return nil
}

func ptr[T any](v T) *T { return &v }
