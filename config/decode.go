package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The strict decoder walks the yaml.Node tree against the Go types itself
// rather than handing the tree to yaml.v3's struct decoding: yaml.v3 stops
// at the first error a custom unmarshaler returns, reports type errors by
// line only, and has no notion of unknown keys. Walking the tree gives each
// problem its exact field path and line, and lets the loader report all of
// them in one pass. Scalars are still converted by yaml.v3 (Node.Decode),
// so YAML's number syntax (0x1F, 1_000) is yaml.v3's.

// structInfo describes the YAML keys of one struct type.
type structInfo struct {
	fields  map[string]int // YAML key → index of the struct field
	allowed string         // the keys, sorted, comma separated, for messages
}

// structInfos is the table of every struct type reachable from Config,
// built once on first use and read-only afterwards.
var structInfos = sync.OnceValue(func() map[reflect.Type]*structInfo {
	m := make(map[reflect.Type]*structInfo)
	addStructInfos(m, reflect.TypeFor[Config]())
	return m
})

func addStructInfos(m map[reflect.Type]*structInfo, t reflect.Type) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	if _, ok := m[t]; ok {
		return
	}
	info := &structInfo{fields: make(map[string]int, t.NumField())}
	m[t] = info
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default key
		}
		info.fields[name] = i
		names = append(names, name)
		addStructInfos(m, f.Type)
	}
	slices.Sort(names)
	info.allowed = strings.Join(names, ", ")
}

// lookupStruct returns the key table of struct type t.
func lookupStruct(t reflect.Type) *structInfo {
	if info, ok := structInfos()[t]; ok {
		return info
	}
	// A type of another file format decoded with DecodeDocument.
	if info, ok := otherStructInfos.Load(t); ok {
		return info.(*structInfo)
	}
	m := make(map[reflect.Type]*structInfo)
	addStructInfos(m, t)
	for typ, info := range m {
		otherStructInfos.LoadOrStore(typ, info)
	}
	return m[t]
}

// otherStructInfos caches the key tables of types not reachable from
// Config (reflect.Type → *structInfo).
var otherStructInfos sync.Map

// nodeInfo is what the decoder remembers about a key or list item of the
// file, indexed by its dotted path.
type nodeInfo struct {
	line int
	null bool // the value is YAML null (`key:` or `key: ~`): treated as unset
}

// decoder is the state of one strict decoding pass.
type decoder struct {
	issues []issue
	// index holds every key and list item the file has, by dotted path.
	index map[string]nodeInfo
	// bad holds the paths whose value could not be decoded; validation
	// problems at or below them are not reported, as they only repeat the
	// decoding problem.
	bad map[string]bool
	// merging holds the mappings whose keys are being collected, to stop
	// a merge key (<<) that refers to its own mapping.
	merging map[*yaml.Node]bool
	// visits bounds the work alias expansion can cause ("billion laughs").
	visits, maxVisits int
	tooComplex        bool
}

// maxVisitsBase is the fixed part of the alias-expansion budget; the rest
// grows with the size of the document.
const maxVisitsBase = 1 << 18

func newDecoder(root *yaml.Node) *decoder {
	return &decoder{
		index:     make(map[string]nodeInfo),
		bad:       make(map[string]bool),
		merging:   make(map[*yaml.Node]bool),
		maxVisits: maxVisitsBase + 16*countNodes(root),
	}
}

// countNodes counts the nodes of the tree without following aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, ch := range n.Content {
		c += countNodes(ch)
	}
	return c
}

// visit spends budget for one node and reports whether decoding may go on.
func (d *decoder) visit(line int) bool {
	if d.tooComplex {
		return false
	}
	d.visits++
	if d.visits > d.maxVisits {
		d.tooComplex = true
		d.fail(line, nil, "document is too complex: aliases (*name) expand to too many values")
		return false
	}
	return true
}

// fail records a problem with the value at p and marks p as undecodable.
func (d *decoder) fail(line int, p fpath, msg string) {
	d.issues = append(d.issues, issue{path: p, line: line, msg: msg})
	d.bad[p.String()] = true
}

// note records a problem that does not spoil the value at p, such as an
// unknown or duplicate key next to it.
func (d *decoder) note(line int, p fpath, msg string) {
	d.issues = append(d.issues, issue{path: p, line: line, msg: msg})
}

// record indexes the key or list item at p.
func (d *decoder) record(p fpath, line int, val *yaml.Node) {
	d.index[p.String()] = nodeInfo{line: line, null: isNull(resolveAlias(val))}
}

// isSet reports whether the file gives the field at p a non-null value;
// defaults apply to the fields that are not set.
func (d *decoder) isSet(p fpath, _ bool) bool {
	info, ok := d.index[p.String()]
	return ok && !info.null
}

// has reports whether the file has the key at p at all, null or not.
func (d *decoder) has(p fpath) bool {
	_, ok := d.index[p.String()]
	return ok
}

// lineOf returns the line of the field at p or, when the file does not
// have it (a missing required field), of its closest enclosing one.
func (d *decoder) lineOf(p fpath) int {
	for i := len(p); i >= 0; i-- {
		if info, ok := d.index[p[:i].String()]; ok {
			return info.line
		}
	}
	return 0
}

// underBad reports whether p is at or below a path that failed to decode.
func (d *decoder) underBad(p fpath) bool {
	for i := len(p); i >= 0; i-- {
		if d.bad[p[:i].String()] {
			return true
		}
	}
	return false
}

// resolveAlias returns the node an alias refers to, or n itself.
func resolveAlias(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// isNull reports whether n is a YAML null.
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v, which must be addressable. line is the line of
// the key or list item that holds n, where problems with n are reported.
func (d *decoder) value(n *yaml.Node, v reflect.Value, p fpath, line int) {
	if !d.visit(line) {
		return
	}
	n = resolveAlias(n)
	if isNull(n) {
		return // leave the zero value: unset
	}
	if v.Addr().Type().Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(line, p, unmarshalMessage(err))
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), p, line)
		v.Set(e)
	case reflect.Struct:
		d.structValue(n, v, p, line)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(line, p, "want a list, got "+describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := p.index(i)
			d.record(ip, item.Line, item)
			d.value(item, s.Index(i), ip, item.Line)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(line, p, "want a mapping of names to values, got "+describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for _, kv := range d.pairs(n, p, p.key) {
			kp := p.key(kv.name)
			d.record(kp, kv.key.Line, kv.val)
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(kv.val, e, kp, kv.key.Line)
			m.SetMapIndex(reflect.ValueOf(kv.name).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(line, p, "want a string, got "+describe(n))
			return
		}
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			v.SetString(n.Value)
		case "!!int", "!!float", "!!bool":
			d.fail(line, p, fmt.Sprintf("want a string, got %s; quote it to use it as text: %s", describe(n), strconv.Quote(n.Value)))
		default:
			d.fail(line, p, "want a string, got "+describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(line, p, "want a whole number, got "+describe(n)+quotedHint(n, "!!int"))
			return
		}
		x := reflect.New(v.Type())
		if err := n.Decode(x.Interface()); err != nil {
			d.fail(line, p, fmt.Sprintf("number %s is too large", n.Value))
			return
		}
		v.Set(x.Elem())
	case reflect.Float32, reflect.Float64:
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || tag != "!!float" && tag != "!!int" {
			hint := quotedHint(n, "!!float")
			if hint == "" {
				hint = quotedHint(n, "!!int")
			}
			d.fail(line, p, "want a number, got "+describe(n)+hint)
			return
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			d.fail(line, p, fmt.Sprintf("invalid number %s", strconv.Quote(shorten(n.Value))))
			return
		}
		// .inf and .nan are YAML floats, but no setting means them, and
		// NaN would slip through every range check.
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(line, p, "want a finite number, got "+shorten(n.Value))
			return
		}
		if v.OverflowFloat(f) {
			d.fail(line, p, fmt.Sprintf("number %s is too large", shorten(n.Value)))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			hint := quotedHint(n, "!!bool")
			switch strings.ToLower(n.Value) {
			case "yes", "on", "y":
				hint = "; write true (YAML 1.2 reads " + n.Value + " as a string)"
			case "no", "off", "n":
				hint = "; write false (YAML 1.2 reads " + n.Value + " as a string)"
			}
			d.fail(line, p, "want true or false, got "+describe(n)+hint)
			return
		}
		v.SetBool(b)
	default:
		// Only reachable if a field of an unsupported kind is added to
		// the types; fail loudly in tests rather than silently skip it.
		d.fail(line, p, fmt.Sprintf("internal error: cannot decode into %s", v.Type()))
	}
}

// structValue decodes mapping n into struct v, reporting unknown keys.
func (d *decoder) structValue(n *yaml.Node, v reflect.Value, p fpath, line int) {
	info := lookupStruct(v.Type())
	if n.Kind != yaml.MappingNode {
		keys := "keys " + info.allowed
		if len(info.fields) == 1 {
			keys = "key " + info.allowed
		}
		d.fail(line, p, fmt.Sprintf("want a mapping with the %s, got %s", keys, describe(n)))
		return
	}
	for _, kv := range d.pairs(n, p, p.field) {
		i, ok := info.fields[kv.name]
		if !ok {
			// Name the unknown key in the field path when it prints safely
			// there; otherwise quote it in the message.
			if plainKey(kv.name) {
				d.note(kv.key.Line, p.field(kv.name), "unknown field; allowed: "+info.allowed)
			} else {
				d.note(kv.key.Line, p, fmt.Sprintf("unknown field %s; allowed: %s", strconv.Quote(kv.name), info.allowed))
			}
			continue
		}
		fp := p.field(kv.name)
		d.record(fp, kv.key.Line, kv.val)
		d.value(kv.val, v.Field(i), fp, kv.key.Line)
	}
}

// keyValue is one entry of a mapping.
type keyValue struct {
	key, val *yaml.Node
	name     string
}

// pairs returns the entries of mapping n, with the entries of merge keys
// (<<: *base) below the explicit ones, and reports duplicate and
// non-string keys. child builds the path of an entry for messages.
func (d *decoder) pairs(n *yaml.Node, p fpath, child func(string) fpath) []keyValue {
	if !d.visit(n.Line) {
		return nil
	}
	d.merging[n] = true
	defer delete(d.merging, n)

	out := make([]keyValue, 0, len(n.Content)/2)
	first := make(map[string]int, len(n.Content)/2) // key → line
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.note(k.Line, p, "want keys that are plain strings, got "+describe(k)+" as a key")
			continue
		}
		if at, dup := first[k.Value]; dup {
			d.note(k.Line, child(k.Value), fmt.Sprintf("duplicate key %s; first defined at line %d", strconv.Quote(k.Value), at))
			continue
		}
		first[k.Value] = k.Line
		out = append(out, keyValue{key: k, val: val, name: k.Value})
	}
	// Explicit keys win over merged ones, and earlier merge sources over
	// later ones, as in YAML's merge key type (https://yaml.org/type/merge.html).
	for _, m := range merges {
		for _, src := range d.mergeSources(m, p) {
			if d.merging[src] {
				d.note(m.Line, p, "merge key << refers to the mapping that contains it")
				continue
			}
			for _, kv := range d.pairs(src, p, child) {
				if _, ok := first[kv.name]; ok {
					continue
				}
				first[kv.name] = kv.key.Line
				out = append(out, kv)
			}
		}
	}
	return out
}

// mergeSources returns the mappings a merge key's value names.
func (d *decoder) mergeSources(m *yaml.Node, p fpath) []*yaml.Node {
	r := resolveAlias(m)
	switch r.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{r}
	case yaml.SequenceNode:
		out := make([]*yaml.Node, 0, len(r.Content))
		for _, item := range r.Content {
			if it := resolveAlias(item); it.Kind == yaml.MappingNode {
				out = append(out, it)
			} else {
				d.note(item.Line, p, "merge key << wants a mapping or a list of mappings, got "+describe(it)+" in the list")
			}
		}
		return out
	default:
		d.note(m.Line, p, "merge key << wants a mapping or a list of mappings, got "+describe(r))
		return nil
	}
}

// quotedHint suggests removing the quotes from a quoted scalar that would
// have the wanted tag without them, as in `port: "8080"`.
func quotedHint(n *yaml.Node, want string) string {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		return ""
	}
	plain := yaml.Node{Kind: yaml.ScalarNode, Value: n.Value}
	if plain.ShortTag() != want {
		return ""
	}
	return "; remove the quotes"
}

// describe names what n is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!int", "!!float":
			return "the number " + shorten(n.Value)
		case "!!bool":
			return "the boolean " + shorten(n.Value)
		case "!!str", "!!timestamp":
			return "the string " + strconv.Quote(shorten(n.Value))
		default:
			return fmt.Sprintf("a value tagged %s", strconv.Quote(shorten(n.Tag)))
		}
	default:
		return "nothing"
	}
}

// shorten cuts long values quoted in messages.
func shorten(s string) string {
	const maxLen = 40
	if utf8.RuneCountInString(s) <= maxLen {
		return s
	}
	r := []rune(s)
	return string(r[:maxLen-3]) + "..."
}

// unmarshalMessage turns an error from an UnmarshalYAML method into a
// message. A *yaml.TypeError carries "line N: " prefixes, which the field
// path and line already say.
func unmarshalMessage(err error) string {
	te, ok := err.(*yaml.TypeError)
	if !ok {
		return err.Error()
	}
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		msgs[i] = stripLinePrefix(e)
	}
	return strings.Join(msgs, "; ")
}

// stripLinePrefix removes a leading "line N: " from a yaml.v3 message.
func stripLinePrefix(s string) string {
	if _, msg, ok := cutLinePrefix(s); ok {
		return msg
	}
	return s
}

// cutLinePrefix splits "line N: message" into N and message.
func cutLinePrefix(s string) (int, string, bool) {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, s, false
	}
	num, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, s, false
	}
	line, err := strconv.Atoi(num)
	if err != nil || line < 0 {
		return 0, s, false
	}
	return line, msg, true
}
