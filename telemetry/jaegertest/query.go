package jaegertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// Trace is one trace as Jaeger's query API (/api/traces) returns it.
type Trace struct {
	TraceID string `json:"traceID"`
	Spans   []Span `json:"spans"`
	// Processes maps Span.ProcessID to the process (service) that
	// reported the span.
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	// Tags are the span's attributes, plus those Jaeger derives from OTLP
	// fields: span.kind, otel.status_code, otel.scope.name and so on.
	Tags []KeyValue `json:"tags"`
	// StartTime is in microseconds since the Unix epoch.
	StartTime int64 `json:"startTime"`
	// Duration is in microseconds.
	Duration  int64  `json:"duration"`
	ProcessID string `json:"processID"`
}

// Reference links a span to another one; RefType is "CHILD_OF" for the
// parent span and "FOLLOWS_FROM" for span links.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag. Type is Jaeger's: "string", "bool", "int64",
// "float64" or "binary". Value holds a string, bool, int64 or float64 to
// match; binary values are left as Jaeger encodes them (a base64 string).
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Process is the service that reported spans, with its resource
// attributes other than service.name as Tags.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns the value of the span's tag key (see KeyValue for its Go
// type) and whether the span has it.
func (s Span) Tag(key string) (any, bool) {
	return lookup(s.Tags, key)
}

// Tag returns the value of the process's tag key and whether it has it.
func (p Process) Tag(key string) (any, bool) {
	return lookup(p.Tags, key)
}

// Service returns the name of the service that reported s, a span of tr.
func (tr Trace) Service(s Span) string {
	return tr.Processes[s.ProcessID].ServiceName
}

func lookup(tags []KeyValue, key string) (any, bool) {
	for _, kv := range tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// apiResponse is the envelope of Jaeger's internal JSON API.
type apiResponse[T any] struct {
	Data   T `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

// Services returns the names of the services Jaeger has received spans
// from. It fails the test on any error.
func (j *Jaeger) Services(t testing.TB) []string {
	t.Helper()
	var s []string
	if err := j.get("/api/services", nil, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Traces returns the traces of service from the last hour, at most 100,
// newest first. A service Jaeger has not seen yet has no traces. It fails
// the test on any error, so call it from the test's goroutine.
func (j *Jaeger) Traces(t testing.TB, service string) []Trace {
	t.Helper()
	tr, err := j.traces(service)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// WaitTraces polls Traces until cond accepts the traces of service and
// returns them, or fails the test after timeout with what it last saw.
// Spans reach storage asynchronously (the collector batches them), so
// tests that have just exported spans wait for them with this.
func (j *Jaeger) WaitTraces(t testing.TB, service string, timeout time.Duration, cond func([]Trace) bool) []Trace {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tr, err := j.traces(service)
		if err == nil && cond(tr) {
			return tr
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("waiting %s for traces of %q: %v", timeout, service, err)
			}
			last, _ := json.MarshalIndent(tr, "", "  ")
			t.Fatalf("waiting %s for traces of %q: condition not met; last seen %d traces:\n%s", timeout, service, len(tr), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (j *Jaeger) traces(service string) ([]Trace, error) {
	q := url.Values{"service": {service}, "lookback": {"1h"}, "limit": {"100"}}
	var tr []Trace
	if err := j.get("/api/traces", q, &tr); err != nil {
		return nil, err
	}
	for i := range tr {
		for k := range tr[i].Spans {
			normalize(tr[i].Spans[k].Tags)
		}
		for id, p := range tr[i].Processes {
			normalize(p.Tags)
			tr[i].Processes[id] = p
		}
	}
	return tr, nil
}

// get decodes the data of GET path?query into data. Numbers are decoded as
// json.Number so that int64 tags keep every digit; normalize converts them.
func (j *Jaeger) get(path string, query url.Values, data any) error {
	u := "http://" + j.Query + path
	if query != nil {
		u += "?" + query.Encode()
	}
	res, err := j.client.Get(u)
	if err != nil {
		return fmt.Errorf("querying jaeger: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("reading GET %s: %w", u, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, res.Status, body)
	}
	env := apiResponse[json.RawMessage]{}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return fmt.Errorf("decoding GET %s: %w", u, err)
	}
	if len(env.Errors) > 0 {
		return fmt.Errorf("GET %s: jaeger error %d: %s", u, env.Errors[0].Code, env.Errors[0].Msg)
	}
	if len(env.Data) == 0 {
		return nil
	}
	dec = json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(data); err != nil {
		return fmt.Errorf("decoding GET %s: %w", u, err)
	}
	return nil
}

// normalize gives each tag value the Go type its Jaeger type names. Jaeger
// writes int64 values beyond JavaScript's 2^53 as JSON strings.
func normalize(tags []KeyValue) {
	for i, kv := range tags {
		var text string
		switch v := kv.Value.(type) {
		case json.Number:
			text = v.String()
		case string:
			if kv.Type != "int64" && kv.Type != "float64" {
				continue
			}
			text = v
		default:
			continue
		}
		if kv.Type == "int64" {
			if v, err := strconv.ParseInt(text, 10, 64); err == nil {
				tags[i].Value = v
				continue
			}
		}
		if v, err := strconv.ParseFloat(text, 64); err == nil {
			tags[i].Value = v
		}
	}
}
