package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds the configuration files Load reads.
const maxFileSize = 16 << 20

// Load reads, decodes, defaults and validates the configuration file at
// path. See [Parse] for what it checks and returns; Load adds only reading
// the file, and returns a plain wrapped error when it cannot read it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()
	// Not os.ReadFile: the file may be a pipe (meshgate validate <(...)),
	// and a bound keeps a wrong path such as /dev/zero from eating memory.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("reading config file %s: larger than %s", path, Size(maxFileSize))
	}
	return Parse(path, data)
}

// Parse decodes a configuration file's contents, fills the defaults and
// validates the result. filename is used in error messages and to resolve
// relative TLS file paths, which are stored resolved; it need not exist.
//
// Decoding is strict: the file must hold exactly one YAML document whose
// keys are all known, without duplicates, with values of the right kinds.
// Defaults apply only to fields the file leaves out (or sets to null), so
// an explicit `idle_timeout: 0s` is reported rather than replaced.
//
// On any problem Parse returns a nil Config and an [Errors] listing all of
// them, sorted by line, each as `file:line: dotted.field: message`.
func Parse(filename string, data []byte) (*Config, error) {
	var issues []issue
	root := document(data, &issues)
	if root == nil {
		return nil, finish(filename, issues, nil)
	}

	d := newDecoder(root)
	d.index[""] = nodeInfo{line: root.Line}
	var c Config
	d.value(root, reflect.ValueOf(&c).Elem(), nil, root.Line)
	issues = append(issues, d.issues...)

	applyDefaults(&c, d.isSet)
	resolveFiles(&c, filepath.Dir(filename))

	v := validator{
		has:              d.has,
		servicesUnknown:  d.underBad(fpath{"services"}),
		discoveryUnknown: d.underBad(fpath{"discovery"}.field("consul")),
	}
	v.config(&c)
	for _, is := range v.issues {
		if d.underBad(is.path) {
			continue // the decoding problem was reported already
		}
		is.line = d.lineOf(is.path)
		issues = append(issues, is)
	}
	if err := finish(filename, issues, d); err != nil {
		return nil, err
	}
	return &c, nil
}

// finish turns issues into sorted, de-duplicated Errors, or nil.
func finish(filename string, issues []issue, d *decoder) error {
	if len(issues) == 0 {
		return nil
	}
	errs := make(Errors, 0, len(issues))
	seen := make(map[FieldError]bool, len(issues))
	for _, is := range issues {
		line := is.line
		if line == 0 && d != nil {
			line = d.lineOf(is.path)
		}
		fe := FieldError{File: filename, Line: line, Field: is.path.String(), Msg: oneLine(is.msg)}
		if seen[fe] {
			continue // an anchor's problem, reached through several aliases
		}
		seen[fe] = true
		errs = append(errs, &fe)
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return a.Line - b.Line })
	return errs
}

// resolveFiles makes relative TLS paths relative to dir, the directory of
// the configuration file.
func resolveFiles(c *Config, dir string) {
	if c.Policies != nil && c.Policies.Dir != "" && !filepath.IsAbs(c.Policies.Dir) {
		c.Policies.Dir = filepath.Join(dir, c.Policies.Dir)
	}
	for i := range c.Listeners {
		t := c.Listeners[i].TLS
		if t == nil {
			continue
		}
		for _, f := range []*string{&t.CertFile, &t.KeyFile} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(dir, *f)
			}
		}
	}
}

// document parses data as a single YAML document and returns its root
// mapping, or nil after adding the reason to issues.
func document(data []byte, issues *[]issue) *yaml.Node {
	return parseDocument(data, issues, "a mapping of settings (listeners, services, routes, ...)")
}

// decodeStream parses the first YAML document of data and peeks at a
// second one. doc is nil when the data holds no document; err is the
// first syntax error.
func decodeStream(data []byte) (doc, extra *yaml.Node, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
		return &first, nil, nil
	case err != nil:
		return &first, nil, err
	default:
		return &first, &second, nil
	}
}

// syntaxIssue turns a yaml.v3 parse error into an issue with a line.
func syntaxIssue(data []byte, err error) issue {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, msg, ok := cutLinePrefix(msg)
	if !ok || line < 1 {
		line = guessErrorLine(data, err.Error())
	}
	// The contract is file:line; when the line cannot be found, point at
	// the top of the file rather than leave it out.
	return issue{line: max(line, 1), msg: "invalid YAML: " + msg}
}

// guessErrorLine finds the line of a parse error that yaml.v3 reports
// without one ("mapping values are not allowed in this context"): the
// shortest prefix of whole lines that fails with the same error ends on
// the offending line. 0 if the search does not settle.
func guessErrorLine(data []byte, want string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(n int) bool {
		_, _, err := decodeStream(bytes.Join(lines[:n], nil))
		return err != nil && err.Error() == want
	}
	if !fails(len(lines)) {
		return 0
	}
	lo, hi := 1, len(lines) // fails(hi) holds
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi
}
