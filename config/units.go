package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as Go writes durations: "250ms",
// "10s", "1m30s". "0" means zero.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the Go form, for example "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration parses the Duration syntax and rejects negative values.
// Surrounding white space is ignored.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	if strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit such as 500ms, 10s or 2m, without a sign", s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit such as 500ms, 10s or 2m", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Its errors are
// *yaml.TypeError values with the node's line, so that yaml.v3 goes on
// decoding and reports every bad value, not just the first.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, errors.New("want a duration such as 10s"))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, err)
	}
	*d = v
	return nil
}

// nodeError reports err as yaml.v3 reports type errors: a *yaml.TypeError
// whose message starts with "line N: ". yaml.v3 aborts decoding on any
// other error from an UnmarshalYAML method.
func nodeError(n *yaml.Node, err error) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the Go form as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads the Go form from a JSON string. JSON null leaves d
// unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a duration string such as 10s")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// JSONSchema describes Duration for editors.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`},
			{Type: "integer", Const: 0},
		},
		Description: "A duration such as 250ms, 10s or 1m30s; 0 is zero.",
	}
}

// Size is a byte count written as a plain integer or with a unit: B, KB,
// MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type Size int64

// ParseSize parses the Size syntax: digits, then optionally spaces and a
// unit. Surrounding white space is ignored.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	sizeUnits := [...]struct {
		suffix string
		mult   int64
	}{
		// Longest suffixes first so "KiB" is not read as "B".
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"B", 1},
	}
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimRight(strings.TrimSuffix(s, u.suffix), " ")
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || !allDigits(num) {
		return 0, fmt.Errorf("invalid size %q: want a whole number of bytes, optionally with a unit (B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// String writes the size with the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler. Like Duration's, its errors
// are *yaml.TypeError values with the node's line.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, errors.New("want a size such as 64KiB"))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return nodeError(n, err)
	}
	*s = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON writes the size as a JSON string such as "64KiB".
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a size from a JSON string or number. JSON null
// leaves s unchanged.
func (s *Size) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		str = string(b)
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// JSONSchema describes Size for editors.
func (Size) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: json.Number("0")},
			{Type: "string", Pattern: `^[0-9]+ *(B|KB|MB|GB|KiB|MiB|GiB)?$`},
		},
		Description: "A byte count: 65536, 64KiB, 10MiB or 1MB.",
	}
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
