package policies

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/internal/testproc"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite policy.schema.json")

const schemaFile = "policy.schema.json"

// TestSchemaUpToDate fails when policy.schema.json no longer matches the Go
// types. `make schema` rewrites it.
func TestSchemaUpToDate(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	testproc.CheckGenerated(t, schemaFile, got, *updateSchema)
}

// TestSchemaAcceptsExamples checks the example policies of deployments/
// against the schema, and that the schema rejects an unknown key.
func TestSchemaAcceptsExamples(t *testing.T) {
	c := jsonschema.NewCompiler()
	var doc any
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("policy.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("policy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../deployments/policies/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example policies in deployments/policies")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var y any
		if err := yaml.Unmarshal(data, &y); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(y) // policy files have string keys only
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := map[string]any{"policies": []any{map[string]any{"name": "x", "applies_to": map[string]any{"all": true}, "colour": "red"}}}
	if err := sch.Validate(bad); err == nil {
		t.Errorf("the schema accepts an unknown key")
	}
}
