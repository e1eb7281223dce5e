package registry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retry pacing after etcd failures.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// backoff paces retries: exponential from min to max, each wait drawn
// between half and all of the step so that many clients do not retry in
// step.
type backoff struct {
	min, max time.Duration
	// rand returns a number in [0, 1). Default math/rand/v2.Float64.
	rand    func() float64
	attempt int
}

func newBackoff() *backoff {
	return &backoff{min: minBackoff, max: maxBackoff, rand: rand.Float64}
}

// next returns the wait before the next attempt.
func (b *backoff) next() time.Duration {
	step := b.max
	if b.attempt < 32 {
		step = min(b.min<<b.attempt, b.max)
	}
	b.attempt++
	return step/2 + time.Duration(b.rand()*float64(step/2))
}

// reset starts over after a success.
func (b *backoff) reset() { b.attempt = 0 }

// wait sleeps for the next step, or until ctx is done; it reports whether
// to go on.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
