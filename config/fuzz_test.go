package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Parse. Parse must not panic; a config
// it accepts must pass Validate and be left unchanged by SetDefaults (but
// for the explicit zeros that SetDefaults documents; see keepFileZeros); a
// rejection must be a non-empty Errors whose entries each name the file
// and fit on one line.
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.yaml", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	// A name in testdata/valid, so that the seeds' relative TLS paths
	// resolve as they do for the files themselves.
	const name = "testdata/valid/fuzz.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(name, data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if errs := c.Validate(); errs != nil {
				t.Fatalf("Parse accepted a config that Validate rejects:\n%v", errs)
			}
			again := c.Redacted()
			// Undo the redaction.
			again.Listeners = c.clone().Listeners
			if cc := again.Discovery.Consul; cc != nil {
				cc.Token = c.Discovery.Consul.Token
			}
			again.SetDefaults()
			keepFileZeros(again, c)
			if !reflect.DeepEqual(again, c) {
				t.Fatalf("SetDefaults changed a parsed config:\n%+v\n%+v", c, again)
			}
			return
		}
		if c != nil {
			t.Fatal("Parse returned a config along with an error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
		}
		for _, e := range errs {
			s := e.String()
			if !strings.HasPrefix(s, name+":") {
				t.Errorf("error does not start with the file name: %q", s)
			}
			if strings.ContainsAny(s, "\r\n") {
				t.Errorf("error spans lines: %q", s)
			}
			if e.Line < 1 {
				t.Errorf("error without a line: %q", s)
			}
			if e.Msg == "" {
				t.Errorf("error without a message: %q", s)
			}
		}
	})
}

// keepFileZeros sets back to 0 in again the fields that a file may set to
// 0 and SetDefaults, which cannot tell 0 from unset, has defaulted (see
// SetDefaults).
func keepFileZeros(again, c *Config) {
	if cc := c.Discovery.Consul; cc != nil && cc.MinInterval == 0 {
		again.Discovery.Consul.MinInterval = 0
	}
	for name, s := range c.Services {
		a := again.Services[name]
		if s.Retry.RetryAfterMax == 0 {
			a.Retry.RetryAfterMax = 0
		}
		if s.Retry.ReplayLimit == 0 {
			a.Retry.ReplayLimit = 0
		}
		if s.Retry.Budget.Ratio == 0 {
			a.Retry.Budget.Ratio = 0
		}
		if s.Retry.Budget.MinPerSecond == 0 {
			a.Retry.Budget.MinPerSecond = 0
		}
		if s.OutlierDetection.MaxEjectionPercent == 0 {
			a.OutlierDetection.MaxEjectionPercent = 0
		}
		again.Services[name] = a
	}
}
