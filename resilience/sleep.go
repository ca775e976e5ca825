package resilience

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, and reports whether the whole d
// passed: the back-off wait of retries and of discovery's watch loops.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
