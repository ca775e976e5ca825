package config

import (
	"strconv"
	"strings"
)

// FieldError is one problem in a configuration: where it is and what is
// wrong. It prints as
//
//	file:line: dotted.field: message
//
// Parts that are unknown are left out: a Config built in Go has no File
// and Line, and a problem with the file as a whole (for example invalid
// YAML) has no Field.
type FieldError struct {
	// File is the configuration file name as given to [Load] or [Parse].
	File string
	// Line is the 1-based line of the offending key, list item or value.
	// For a missing required field it is the line of the enclosing mapping.
	// 0 when unknown.
	Line int
	// Field is the dotted path of the field, for example
	// "listeners[0].address", "services.products.instances[1].port" or
	// "routes[2].match.path_prefix". Map keys that are not plain words
	// are quoted: `services["a.b"].protocol`.
	Field string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// String formats e as `file:line: field: message`.
func (e *FieldError) String() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	case e.File != "":
		b.WriteString(e.File)
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Error implements error; it is the same as String.
func (e *FieldError) Error() string { return e.String() }

// Errors is every problem found in a configuration, sorted by line. [Load]
// and [Parse] return it as their error; use errors.As to get at it:
//
//	var errs config.Errors
//	if errors.As(err, &errs) {
//		for _, e := range errs { ... }
//	}
type Errors []*FieldError

// Error lists the problems, one `file:line: field: message` per line.
func (e Errors) Error() string {
	var b strings.Builder
	for i, fe := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(fe.String())
	}
	return b.String()
}

// Unwrap returns the individual problems, so that errors.As can find a
// *FieldError.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

// Err returns e as an error, or nil when e is empty. Use it where an error
// is expected, because a nil or empty Errors stored in an error interface
// is not a nil error:
//
//	if err := cfg.Validate().Err(); err != nil { ... }
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

var _ error = Errors(nil)

// fpath is a field path under construction: segments such as "listeners",
// "[0]", ".address" or `["a.b"]`. A path is never modified in place; the
// builders return a copy, so paths can be shared between siblings.
type fpath []string

// field returns the path of the struct field (YAML key) name under p.
func (p fpath) field(name string) fpath {
	if len(p) == 0 {
		return fpath{name}
	}
	return append(p[:len(p):len(p)], "."+name)
}

// key returns the path of map key k under p. Keys that are not plain words
// are quoted so that the path stays unambiguous.
func (p fpath) key(k string) fpath {
	if !plainKey(k) {
		return append(p[:len(p):len(p)], "["+strconv.Quote(k)+"]")
	}
	return p.field(k)
}

// index returns the path of list item i under p.
func (p fpath) index(i int) fpath {
	return append(p[:len(p):len(p)], "["+strconv.Itoa(i)+"]")
}

// String returns the dotted form, for example "listeners[0].address".
func (p fpath) String() string { return strings.Join(p, "") }

// plainKey reports whether k can appear unquoted in a dotted path.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// issue is a problem found while decoding or validating, before it is
// placed in a file.
type issue struct {
	path fpath
	line int // 0: look the path up in the node index
	msg  string
}
