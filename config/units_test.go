package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string // substring; "" means no error
	}{
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "10s", want: 10 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "2h45m", want: 2*time.Hour + 45*time.Minute},
		{in: "100us", want: 100 * time.Microsecond},
		{in: "100µs", want: 100 * time.Microsecond},
		{in: "  5s  ", want: 5 * time.Second},
		{in: "", wantErr: "want a number with a unit"},
		{in: "10", wantErr: "want a number with a unit"},
		{in: "00", wantErr: "want a number with a unit"},
		{in: "ten seconds", wantErr: "want a number with a unit"},
		{in: "5d", wantErr: "want a number with a unit"},
		{in: "-5s", wantErr: "must not be negative"},
		{in: "-0s", wantErr: "must not be negative"},
		{in: "+5s", wantErr: "without a sign"},
		{in: "9999999999h", wantErr: "invalid duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDuration(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.D() != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			// The Go form parses back to the same value.
			if back, err := ParseDuration(got.String()); err != nil || back != got {
				t.Errorf("round trip of %v: %v, %v", got, back, err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    Size
		wantStr string
		wantErr string
	}{
		{in: "0", want: 0, wantStr: "0"},
		{in: "1", want: 1, wantStr: "1"},
		{in: "65536", want: 64 << 10, wantStr: "64KiB"},
		{in: "512B", want: 512, wantStr: "512"},
		{in: "64KiB", want: 64 << 10, wantStr: "64KiB"},
		{in: "64 KiB", want: 64 << 10, wantStr: "64KiB"},
		{in: "10MiB", want: 10 << 20, wantStr: "10MiB"},
		{in: "2GiB", want: 2 << 30, wantStr: "2GiB"},
		{in: "1KB", want: 1000, wantStr: "1000"},
		{in: "50MB", want: 50_000_000, wantStr: "50000000"},
		{in: "3GB", want: 3_000_000_000, wantStr: "3000000000"},
		{in: " 7 B ", want: 7, wantStr: "7"},
		{in: "", wantErr: "invalid size"},
		{in: "KiB", wantErr: "invalid size"},
		{in: "1.5MiB", wantErr: "invalid size"},
		{in: "-1", wantErr: "invalid size"},
		{in: "+1", wantErr: "invalid size"},
		{in: "10XB", wantErr: "invalid size"},
		{in: "10kib", wantErr: "invalid size"},
		{in: "0x10", wantErr: "invalid size"},
		{in: "99999999999GiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "invalid size"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSize(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSize(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %v, %v; want %v", tc.in, int64(got), err, int64(tc.want))
			}
			if s := got.String(); s != tc.wantStr {
				t.Errorf("String() = %q, want %q", s, tc.wantStr)
			}
			if back, err := ParseSize(got.String()); err != nil || back != got {
				t.Errorf("round trip of %v: %v, %v", got, back, err)
			}
		})
	}
}

func TestUnitsYAMLErrorsCarryLines(t *testing.T) {
	t.Parallel()
	// Decoding with plain yaml.v3 (as other packages may do with these
	// types) reports every bad value with its line instead of stopping
	// at the first.
	var v struct {
		A Duration `yaml:"a"`
		B Size     `yaml:"b"`
		C Duration `yaml:"c"`
	}
	err := yaml.Unmarshal([]byte("a: 10\nb: 1.5MiB\nc: 3s\n"), &v)
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) != 2 ||
		!strings.HasPrefix(te.Errors[0], "line 1: invalid duration") || !strings.HasPrefix(te.Errors[1], "line 2: invalid size") {
		t.Fatalf("got %v, want two type errors on lines 1 and 2", err)
	}
	if v.C != Duration(3*time.Second) {
		t.Errorf("decoding stopped early: c = %v", v.C)
	}
}

func TestUnitsJSON(t *testing.T) {
	t.Parallel()
	var v struct {
		D Duration `json:"d"`
		S Size     `json:"s"`
	}
	if err := json.Unmarshal([]byte(`{"d":"1m30s","s":"64KiB"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.D != Duration(90*time.Second) || v.S != 64<<10 {
		t.Errorf("got %+v", v)
	}
	if err := json.Unmarshal([]byte(`{"s":1024}`), &v); err != nil || v.S != 1024 {
		t.Errorf("size from a JSON number: %v, %v", v.S, err)
	}
	// null leaves the values alone, as encoding/json does for other types.
	if err := json.Unmarshal([]byte(`{"d":null,"s":null}`), &v); err != nil || v.D != Duration(90*time.Second) || v.S != 1024 {
		t.Errorf("null: %+v, %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"-1s"}`), &v); err == nil {
		t.Errorf("negative duration from JSON accepted")
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"d":"1m30s","s":"1KiB"}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}
