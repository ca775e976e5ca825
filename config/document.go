package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Document is a YAML file decoded strictly into a Go value by the same
// decoder that reads the configuration file: unknown keys, duplicate keys
// and values of the wrong kind are problems with a line and a dotted field
// path. Other file formats of meshgate (policy files) use it so that every
// file the user writes reports problems the same way.
//
// After decoding, the caller validates the value and adds its own
// problems with [Document.Addf]; [Document.Err] returns them all, sorted
// by line, as [Errors].
type Document struct {
	file   string
	d      *decoder
	issues []issue
}

// DecodeDocument decodes data, which must hold exactly one YAML document
// whose top level is a mapping, into v (a pointer to a struct). file names
// the document in messages; topLevel says what the top level should hold,
// for the message about an empty or wrongly shaped file (for example
// `a mapping with "policies"`).
func DecodeDocument(file string, data []byte, v any, topLevel string) *Document {
	doc := &Document{file: file}
	root := parseDocument(data, &doc.issues, topLevel)
	if root == nil {
		return doc
	}
	doc.d = newDecoder(root)
	doc.d.index[""] = nodeInfo{line: root.Line}
	doc.d.value(root, reflect.ValueOf(v).Elem(), nil, root.Line)
	doc.issues = append(doc.issues, doc.d.issues...)
	return doc
}

// Decoded reports whether the document could be read at all (it parsed as
// YAML and its top level is a mapping); when it could not, Err says why
// and the value is zero.
func (doc *Document) Decoded() bool { return doc.d != nil }

// IsSet reports whether the document gives the field at path a non-null
// value. path is dotted as in messages: "policies[0].authn.jwt.issuer".
func (doc *Document) IsSet(path string) bool {
	if doc.d == nil {
		return false
	}
	info, ok := doc.d.index[path]
	return ok && !info.null
}

// Line returns the line of the field at path or, when the document does
// not have it (a missing required field), of its closest enclosing one.
func (doc *Document) Line(path string) int {
	if doc.d == nil {
		return 0
	}
	return doc.d.lineOf(splitPath(path))
}

// Bad reports whether the field at path, or one enclosing it, could not
// be decoded; its problem was reported already, so validation should not
// report it again.
func (doc *Document) Bad(path string) bool {
	return doc.d != nil && doc.d.underBad(splitPath(path))
}

// Addf records a problem with the field at path, placed on its line.
func (doc *Document) Addf(path, format string, args ...any) {
	doc.AddAt(0, path, fmt.Sprintf(format, args...))
}

// AddAt records a problem with the field at path on a given line (0: the
// field's own line), for problems found inside a value, such as an error
// in a multi-line expression.
func (doc *Document) AddAt(line int, path, msg string) {
	if doc.Bad(path) {
		return
	}
	if line == 0 {
		line = doc.Line(path)
	}
	doc.issues = append(doc.issues, issue{path: splitPath(path), line: line, msg: msg})
}

// Err returns every problem of the document sorted by line, as [Errors],
// or nil.
func (doc *Document) Err() error {
	return finish(doc.file, doc.issues, doc.d)
}

// Path helpers for callers building dotted paths.

// Field returns the path of key name under path.
func Field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Key returns the path of map key k under path, quoted when k is not a
// plain word, as the decoder writes it.
func Key(path, k string) string {
	if !plainKey(k) {
		return path + "[" + strconv.Quote(k) + "]"
	}
	return Field(path, k)
}

// Index returns the path of list item i under path.
func Index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// splitPath turns a dotted path back into the decoder's segments.
func splitPath(s string) fpath {
	var p fpath
	for len(s) > 0 {
		switch s[0] {
		case '[':
			end := 1
			if len(s) > 1 && s[1] == '"' {
				q, err := strconv.QuotedPrefix(s[1:])
				if err != nil {
					return append(p, s) // not a path the decoder writes
				}
				end += len(q)
			} else {
				end = strings.IndexByte(s, ']')
				if end < 0 {
					return append(p, s)
				}
			}
			if end >= len(s) || s[end] != ']' {
				return append(p, s)
			}
			p = append(p, s[:end+1])
			s = s[end+1:]
		default:
			start := 0
			if s[0] == '.' {
				start = 1
			}
			end := strings.IndexAny(s[start:], ".[")
			if end < 0 {
				end = len(s)
			} else {
				end += start
			}
			seg := s[:end]
			if len(p) == 0 {
				seg = strings.TrimPrefix(seg, ".")
			}
			p = append(p, seg)
			s = s[end:]
		}
	}
	return p
}

// parseDocument is document with the top-level hint of the caller.
func parseDocument(data []byte, issues *[]issue, topLevel string) *yaml.Node {
	doc, extra, err := decodeStream(data)
	if err != nil && doc == nil {
		*issues = append(*issues, syntaxIssue(data, err))
		return nil
	}
	switch {
	case err != nil:
		*issues = append(*issues, syntaxIssue(data, err))
	case extra != nil:
		*issues = append(*issues, issue{line: max(extra.Line, 1), msg: `more than one YAML document; want exactly one (remove the "---" separator and what follows)`})
	}
	if doc == nil || len(doc.Content) == 0 || isNull(resolveAlias(doc.Content[0])) {
		line := 1
		if doc != nil && len(doc.Content) > 0 {
			line = max(doc.Content[0].Line, 1)
		}
		*issues = append(*issues, issue{line: line, msg: "the file is empty; want " + topLevel})
		return nil
	}
	root := resolveAlias(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		*issues = append(*issues, issue{line: max(root.Line, 1), msg: "want " + topLevel + " at the top level, got " + describe(root)})
		return nil
	}
	return root
}
