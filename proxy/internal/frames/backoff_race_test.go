package frames

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestBackendReadyDialFailuresRace: Ready dials a backend whose dials
// fail, again after each backoff, as routing does while it passes over a
// backend; run under -race.
func TestBackendReadyDialFailuresRace(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{}, "")
	b := e.Backend("failing", "failing", func(context.Context) (net.Conn, error) {
		return nil, errors.New("refused by the test")
	}, nil)
	for range 3 {
		testwait.For(ctx, t, "the backoff to end", func() bool { return !b.Failing(time.Now()) })
		if b.Ready() {
			t.Fatal("a backend that cannot be dialled is ready")
		}
		testwait.For(ctx, t, "the dial to fail", func() bool { return b.Failing(time.Now()) })
	}
}
