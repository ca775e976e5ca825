package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// usersCallTimeout bounds an orders instance's call to the users service.
const usersCallTimeout = 2 * time.Second

// maxUserBody bounds the users service's answer.
const maxUserBody = 1 << 20

// traceHeaders are the W3C Trace Context and Baggage headers an orders
// instance copies onto its call to users, so that the sidecars on both
// sides put their spans into the caller's trace. The demo has no
// OpenTelemetry SDK of its own: it only passes the context along.
var traceHeaders = [...]string{"Traceparent", "Tracestate", "Baggage"}

// Customer is the part of a user an order view embeds.
type Customer struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// customer fetches the user of an order from {usersURL}/users/{id},
// carrying the trace context of r.
func (in *instance) customer(r *http.Request, userID int) (Customer, error) {
	ctx, cancel := context.WithTimeout(r.Context(), usersCallTimeout)
	defer cancel()
	url := in.usersURL + "/users/" + strconv.Itoa(userID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Customer{}, fmt.Errorf("calling users: %w", err)
	}
	for _, h := range traceHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := in.client.Do(req)
	if err != nil {
		return Customer{}, fmt.Errorf("calling users: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody))
	if err != nil {
		return Customer{}, fmt.Errorf("reading the users answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return Customer{}, fmt.Errorf("users answered %d: %s", resp.StatusCode, e.Error)
		}
		return Customer{}, fmt.Errorf("users answered %d", resp.StatusCode)
	}
	var c Customer
	if err := json.Unmarshal(body, &c); err != nil {
		return Customer{}, fmt.Errorf("decoding the users answer: %w", err)
	}
	if c.ID != userID {
		return Customer{}, fmt.Errorf("users answered user %d for %d", c.ID, userID)
	}
	return c, nil
}
