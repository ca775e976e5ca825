package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/internal/testproc"
)

const schemaFile = "meshgate.schema.json"

// TestSchemaUpToDate fails when meshgate.schema.json no longer matches the
// Go types. `make schema` (go test ./config -run TestSchemaUpToDate
// -update) rewrites it.
func TestSchemaUpToDate(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	testproc.CheckGenerated(t, schemaFile, got, *update)
}

func TestSchemaHasDescriptions(t *testing.T) {
	t.Parallel()
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Defs map[string]struct {
			Description string                                  `json:"description"`
			Properties  map[string]struct{ Description string } `json:"properties"`
			Additional  *bool                                   `json:"additionalProperties"`
		} `json:"$defs"`
		Description string `json:"description"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Description == "" {
		t.Errorf("the root has no description")
	}
	for name, d := range s.Defs {
		if d.Description == "" {
			t.Errorf("$defs.%s has no description", name)
		}
		for prop, p := range d.Properties {
			if p.Description == "" {
				t.Errorf("$defs.%s.%s has no description", name, prop)
			}
		}
		if d.Properties != nil && (d.Additional == nil || *d.Additional) {
			t.Errorf("$defs.%s allows additional properties", name)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaFile, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSONValue decodes a YAML file into the JSON data model that the
// schema validator expects.
func yamlToJSONValue(t *testing.T, file string) any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	b, err := json.Marshal(jsonCompatible(v))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonCompatible turns the map[any]any that yaml.v3 makes for mappings
// with non-string keys into map[string]any.
func jsonCompatible(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonCompatible(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonCompatible(e)
		}
		return v
	default:
		return v
	}
}

func TestSchemaAcceptsValidFiles(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid files: %v", err)
	}
	for _, file := range files {
		if err := s.Validate(yamlToJSONValue(t, file)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// TestSchemaRejectsInvalidFiles checks invalid files whose problem the
// schema can express; the others (addresses, files, references) only the
// loader catches.
func TestSchemaRejectsInvalidFiles(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	for _, name := range []string{
		"unknown_top",                     // unknown key, listeners missing
		"unknown_nested",                  // unknown keys below the top
		"type_errors",                     // "yes" for a boolean, "8080" for a port
		"wrong_kinds",                     // a mapping where a list belongs
		"bad_durations",                   // "10" without a unit
		"bad_sizes2",                      // "10XB"
		"missing_required",                // no address
		"no_listeners",                    // empty list
		"exclusive_fields",                // path and path_prefix
		"consistent_hash",                 // consistent_hash without hash_on
		"bad_ports",                       // port 70000
		"service_fields",                  // protocol http2, service name -bad
		"instances",                       // weight 20000, health sick
		"trusted_hops",                    // 17
		"string_types",                    // a number where a string belongs
		"bad_methods",                     // lower-case method
		"bad_paths",                       // path without a leading /
		"consul_unknown",                  // unknown keys in discovery and register
		"consul_tags",                     // duplicate and empty tags
		"consul_routes",                   // meta_key starting with consul-
		"consul_address",                  // datacenter with spaces
		"register_port",                   // port 70000, weight 0
		"register_fields",                 // name with a space, meta keys
		"register_missing",                // no name, address or port
		"register_without_consul",         // register without discovery.consul
		"register_check_default_interval", // path without a leading /
		"consul_address_url",              // ftp check url
		"retry_attempts",                  // attempts 0 and 11
		"retry_statuses",                  // 404, a duplicate, a number for a list
		"retry_budget",                    // ratio 1.5, min_per_second 20000
		"breaker_fields",                  // failure_ratio 0, min_requests 200000
		"outlier_fields",                  // consecutive_failures 1001, max_ejection_percent 101
		"concurrency_limits",              // max_concurrent_requests -1
		"route_timeout",                   // "-1s" and "30" are not durations
	} {
		file := filepath.Join("testdata", "invalid", name+".yaml")
		if err := s.Validate(yamlToJSONValue(t, file)); err == nil {
			t.Errorf("%s: the schema accepts it", file)
		}
	}
}
