package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxFaultsBody bounds a PUT /_faults body.
const maxFaultsBody = 4 << 10

// faultSettings is what an instance injects into every response but those
// of /healthz and /_faults. It is immutable once stored.
type faultSettings struct {
	Latency  time.Duration
	FailRate float64
}

// faultsJSON is the body of GET and PUT /_faults. In a PUT, a field left
// out keeps its value.
type faultsJSON struct {
	Instance string   `json:"instance,omitempty"`
	Latency  *string  `json:"latency,omitempty"`   // a Go duration, such as "200ms"
	FailRate *float64 `json:"fail_rate,omitempty"` // 0..1
}

func (in *instance) faultsBody(f *faultSettings) faultsJSON {
	lat := f.Latency.String()
	rate := f.FailRate
	return faultsJSON{Instance: in.id, Latency: &lat, FailRate: &rate}
}

// getFaults answers GET /_faults with the settings in force.
func (in *instance) getFaults(w http.ResponseWriter, r *http.Request) {
	in.writeJSON(w, http.StatusOK, in.faultsBody(in.fault.Load()))
}

// putFaults changes the settings: PUT /_faults with
// {"latency": "200ms", "fail_rate": 0.5}, either field optional. It
// answers with the settings now in force.
func (in *instance) putFaults(w http.ResponseWriter, r *http.Request) {
	var req faultsJSON
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFaultsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			in.writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("faults body larger than %d bytes", maxFaultsBody))
			return
		}
		in.writeError(w, http.StatusBadRequest, `invalid faults: `+err.Error()+`; want {"latency": "200ms", "fail_rate": 0.5}`)
		return
	}
	if dec.More() {
		in.writeError(w, http.StatusBadRequest, "invalid faults: more than one JSON value in the body")
		return
	}
	next := *in.fault.Load()
	if req.Latency != nil {
		d, err := time.ParseDuration(*req.Latency)
		if err != nil || d < 0 {
			in.writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid latency %q: want a duration of at least 0, such as 200ms", *req.Latency))
			return
		}
		next.Latency = d
	}
	if req.FailRate != nil {
		if v := *req.FailRate; !(v >= 0 && v <= 1) {
			in.writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid fail_rate %v: want a share between 0 and 1", v))
			return
		}
		next.FailRate = *req.FailRate
	}
	in.fault.Store(&next)
	in.writeJSON(w, http.StatusOK, in.faultsBody(&next))
}
