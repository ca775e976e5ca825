package policies

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshgate/meshgate/config"
)

// maxFileSize bounds a policy file.
const maxFileSize = 4 << 20

// Source is one policy document: a file, or a value under the Consul KV
// prefix.
type Source struct {
	// Name is where the document came from, as errors print it: the
	// file's path, or "consul:PREFIX/KEY".
	Name string
	// Dir resolves relative key files; "" for Consul KV documents, which
	// must then use absolute paths.
	Dir string
	// Data is the YAML.
	Data []byte
}

// ReadDir reads the policy files of dir: every *.yaml and *.yml file, in
// name order. Subdirectories and other files are ignored. A missing or
// unreadable directory is an error.
func ReadDir(dir string) ([]Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading policy directory: %w", err)
	}
	var out []Source
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, Source{Name: path, Dir: dir, Data: data})
	}
	return out, nil
}

// ReadFiles reads the given policy files, in the order given.
func ReadFiles(paths ...string) ([]Source, error) {
	out := make([]Source, 0, len(paths))
	for _, p := range paths {
		data, err := readFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, Source{Name: p, Dir: filepath.Dir(p), Data: data})
	}
	return out, nil
}

// readFile reads one policy file, bounded.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading policy file: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("reading policy file %s: larger than %s", path, config.Size(maxFileSize))
	}
	return data, nil
}

// Validate compiles sources the way a reload would, without fetching JWKS
// URLs, connecting to Redis or starting anything, and returns every
// problem as config.Errors (`file:line: field: message`), or nil. haveRedis
// says whether the config has policies.redis, which global limits need.
func Validate(sources []Source, haveRedis bool) (*Set, error) {
	return compileSources(sources, &Env{}, newResources(), true, haveRedis)
}

// compileSources decodes and compiles every source into a Set; on any
// problem it returns them all.
func compileSources(sources []Source, env *Env, res *resources, validateOnly, haveRedis bool) (*Set, error) {
	fillEnv(env)
	set := &Set{env: env}
	seen := make(map[string]string)
	var errs config.Errors
	for _, src := range sources {
		var f File
		doc := config.DecodeDocument(src.Name, src.Data, &f, `a mapping with "policies"`)
		c := &compiler{doc: doc, file: src.Name, dir: src.Dir, env: env, res: res, validateOnly: validateOnly, haveRedis: haveRedis}
		if doc.Decoded() {
			set.policies = append(set.policies, c.compileFile(&f, seen)...)
		}
		if err := doc.Err(); err != nil {
			errs = append(errs, err.(config.Errors)...) // Document.Err returns only Errors
		}
		set.files = append(set.files, src.Name)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// fillEnv sets the defaults of an Env.
func fillEnv(env *Env) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	if env.ClientIP == nil {
		env.ClientIP = RemoteIP
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if env.Now == nil {
		env.Now = time.Now
	}
}

// RemoteIP returns the address of the connection's peer.
func RemoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}
