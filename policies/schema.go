package policies

import (
	"embed"

	"github.com/invopop/jsonschema"

	"github.com/meshgate/meshgate/config"
)

// typeSources holds the declarations of the policy file's types, whose doc
// comments become the schema's descriptions.
//
//go:embed types.go
var typeSources embed.FS

// Schema returns the JSON Schema (draft 2020-12) of a policy file,
// generated from the Go types as the config's is. It is committed as
// policies/policy.schema.json for editors; the loader is the authority and
// checks more (CEL expressions, keys, references to routes).
func Schema() ([]byte, error) {
	return config.GenerateSchema(&File{}, "meshgate policy file", typeSources, refineSchema)
}

// refineSchema adds what struct tags cannot say.
func refineSchema(s *jsonschema.Schema) error {
	jwt, ok := s.Definitions["JWT"]
	if !ok {
		return errNoDefinition("JWT")
	}
	one := func(name string) *jsonschema.Schema { return &jsonschema.Schema{Required: []string{name}} }
	jwt.OneOf = []*jsonschema.Schema{one("jwks_url"), one("jwks_file"), one("hmac_secret_file")}
	authn, ok := s.Definitions["Authn"]
	if !ok {
		return errNoDefinition("Authn")
	}
	authn.AnyOf = []*jsonschema.Schema{one("jwt"), one("api_keys")}
	pol, ok := s.Definitions["Policy"]
	if !ok {
		return errNoDefinition("Policy")
	}
	if name, ok := pol.Properties.Get("name"); ok {
		name.Pattern = namePattern.String()
	}
	return nil
}

type errNoDefinition string

func (e errNoDefinition) Error() string { return "no definition " + string(e) }
