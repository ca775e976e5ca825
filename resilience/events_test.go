package resilience

import "testing"

func TestObserver(t *testing.T) {
	t.Parallel()
	var none Observer
	none.Observe(Event{Kind: EventRetry}) // must not panic

	var got []Event
	var o Observer = func(e Event) { got = append(got, e) }
	want := Event{Kind: EventBreakerState, Service: "svc", Instance: "a", From: StateClosed, To: StateOpen}
	o.Observe(want)
	if len(got) != 1 || got[0] != want {
		t.Errorf("observer got %+v, want [%+v]", got, want)
	}
}
