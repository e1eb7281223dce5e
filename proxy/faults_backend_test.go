//go:build unix

package proxy_test

import (
	"context"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// backendFaultContext bounds a fault test: longer with CHAOS=1.
func backendFaultContext(t *testing.T) context.Context {
	limit := 90 * time.Second
	if backendFaultChaos() {
		limit = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	return ctx
}

// backendFaultRounds returns how many faults a test injects and how many
// calls the load completes between two: one fault and a second of load
// normally, several and about 30 s with CHAOS=1.
func backendFaultRounds() (rounds, calls int) {
	if backendFaultChaos() {
		return 6, 1500
	}
	return 1, 300
}

// TestFaultBackendKilled kills a backend process with SIGKILL under load.
// Unary calls not yet sent to it go elsewhere; with Unary configured as
// idempotent, none fails; without, only the calls that were on it fail,
// with UNAVAILABLE. Streams on it end with UNAVAILABLE, never a hang.
func TestFaultBackendKilled(t *testing.T) {
	for _, idempotent := range []bool{true, false} {
		name := "idempotent"
		if !idempotent {
			name = "not idempotent"
		}
		t.Run(name, func(t *testing.T) {
			ctx := backendFaultContext(t)
			rounds, perPhase := backendFaultRounds()
			procs := map[string]*os.Process{}
			startProc := func() string {
				addr, proc := startBackendProcess(t)
				procs[addr] = proc
				return addr
			}
			addrs := []string{startProc(), startProc(), startProc()}
			env := startBackendFaultEnv(t, addrs, backendFaultOptions{idempotent: idempotent})
			env.warmUp(ctx, t, addrs...)
			load := startBackendFaultLoad(ctx, t, env.echo)
			for round := range rounds {
				load.waitCalls(ctx, t, perPhase)
				victim := env.addrs[0]
				mark, at := load.completed(), time.Now()
				if err := procs[victim].Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				load.waitNoPicks(ctx, t, env.state(t, victim), 100)
				load.waitCalls(ctx, t, perPhase)
				t.Logf("kill %d: %s", round+1, summarizeBackendFault(load.snapshot()[mark:], at, victim))
				if round+1 < rounds {
					// A new instance takes the dead one's place.
					replacement := startProc()
					env.setEndpoints(t, append(slices.Clone(env.addrs[1:]), replacement))
					env.warmUp(ctx, t, replacement)
				}
			}
			load.stopAndWait()
			calls := load.snapshot()
			total := summarizeBackendFault(calls, time.Time{}, "")
			t.Logf("in all: %s", total)
			for _, c := range backendFaultFailuresOtherThan(calls, codes.Unavailable) {
				t.Errorf("a call (stream %v, on %q) failed with %v, want UNAVAILABLE: a killed backend's calls must end at once", c.stream, c.server, c.err)
			}
			// A call whose response had begun when its backend died is
			// not retried: the backend took it. The others must be, but
			// for those grpc-go fails (see neverSentNotRetried).
			if n := total.unretriedUnary(); idempotent && n > 0 {
				t.Errorf("%d idempotent unary calls failed before their response began, want them retried elsewhere; the first: %v",
					n, firstUnaryFailure(calls))
			}
		})
	}
}

// TestFaultBackendHangs covers backends that accept connections and never
// answer: a process stopped with SIGSTOP (its connections stay open), and
// a new instance that accepts and never speaks HTTP/2.
func TestFaultBackendHangs(t *testing.T) {
	t.Run("stopped process", func(t *testing.T) {
		ctx := backendFaultContext(t)
		rounds, perPhase := backendFaultRounds()
		rounds = min(rounds, 3) // each takes the keepalive's 10 s at least
		procs := map[string]*os.Process{}
		var addrs []string
		for range 3 {
			addr, proc := startBackendProcess(t)
			procs[addr] = proc
			addrs = append(addrs, addr)
		}
		env := startBackendFaultEnv(t, addrs, backendFaultOptions{idempotent: true, keepalive: true})
		env.warmUp(ctx, t, addrs...)
		load := startBackendFaultLoad(ctx, t, env.echo)
		for round := range rounds {
			load.waitCalls(ctx, t, perPhase)
			victim := addrs[round%len(addrs)]
			mark, at := load.completed(), time.Now()
			if err := procs[victim].Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = procs[victim].Signal(syscall.SIGCONT) })
			load.waitNoPicks(ctx, t, env.state(t, victim), 200)
			out := time.Since(at)
			load.waitCalls(ctx, t, perPhase)
			t.Logf("stop %d: out of routing after %s; %s", round+1, out.Round(time.Millisecond),
				summarizeBackendFault(load.snapshot()[mark:], at, victim))
			if err := procs[victim].Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if round+1 < rounds {
				env.warmUp(ctx, t, victim)
			}
		}
		load.stopAndWait()
		calls := load.snapshot()
		t.Logf("in all: %s", summarizeBackendFault(calls, time.Time{}, ""))
		for _, c := range backendFaultFailuresOtherThan(calls, codes.Unavailable, codes.DeadlineExceeded) {
			t.Errorf("a call (stream %v, on %q) failed with %v, want UNAVAILABLE or DEADLINE_EXCEEDED", c.stream, c.server, c.err)
		}
	})

	t.Run("silent listener", func(t *testing.T) {
		ctx := backendFaultContext(t)
		_, perPhase := backendFaultRounds()
		a, _ := startBackendProcess(t)
		b, _ := startBackendProcess(t)
		env := startBackendFaultEnv(t, []string{a, b}, backendFaultOptions{idempotent: true, keepalive: true})
		env.warmUp(ctx, t, a, b)
		load := startBackendFaultLoad(ctx, t, env.echo)
		load.waitCalls(ctx, t, perPhase)
		silent := startSilentListener(t)
		at := time.Now()
		env.setEndpoints(t, []string{a, b, silent})
		load.waitCalls(ctx, t, 2*perPhase)
		state := env.state(t, silent)
		if backendFaultChaos() {
			// Its health checks fail when the connection attempt times
			// out (20 s), twice.
			testwait.For(ctx, t, "the silent instance to be found unhealthy", func() bool { return !state.Healthy() })
			t.Logf("silent listener found unhealthy after %s", time.Since(at).Round(time.Millisecond))
		}
		load.stopAndWait()
		calls := load.snapshot()
		t.Logf("silent listener added: %s; picks of it: %d", summarizeBackendFault(calls, at, silent), state.Picks())
		if state.Picks() != 0 {
			t.Errorf("the silent instance was picked %d times: a connection never ready must get no call", state.Picks())
		}
		for _, c := range backendFaultFailuresOtherThan(calls) {
			t.Errorf("a call (stream %v) failed: %v", c.stream, c.err)
		}
	})
}

// TestFaultBackendCutsConnections cuts the TCP connections between the
// proxy and a backend under load, as a backend closing its connections or
// a middlebox dropping them does. Streams on them end with UNAVAILABLE;
// the idempotent unary calls on them are retried.
func TestFaultBackendCutsConnections(t *testing.T) {
	ctx := backendFaultContext(t)
	rounds, perPhase := backendFaultRounds()
	rounds *= 2
	perPhase /= 2
	var addrs []string
	cutters := map[string]*connCutter{}
	for _, name := range []string{"b0", "b1", "b2"} {
		be := startBackend(t, name)
		c := startConnCutter(t, be.addr)
		cutters[name] = c
		addrs = append(addrs, c.addr)
	}
	env := startBackendFaultEnv(t, addrs, backendFaultOptions{idempotent: true})
	env.warmUp(ctx, t, "b0", "b1", "b2")
	load := startBackendFaultLoad(ctx, t, env.echo)
	for round := range rounds {
		load.waitCalls(ctx, t, perPhase)
		victim := []string{"b0", "b1", "b2"}[round%3]
		mark, at := load.completed(), time.Now()
		cut := cutters[victim].cut()
		load.waitCalls(ctx, t, perPhase)
		// The victim stays in service: the proxy connects again at once.
		rep := summarizeBackendFault(load.snapshot()[mark:], at, victim)
		t.Logf("cut %d (%d connections of %s): %s; last failure ended %s after the cut; streams on it: %d, %d broken, ended within %s",
			round+1, cut, victim, summarizeBackendFault(load.snapshot()[mark:], time.Time{}, ""),
			rep.lastFailure.Round(time.Millisecond), rep.victimStreams, rep.brokenStreams, rep.streamEnd.Round(time.Millisecond))
	}
	load.stopAndWait()
	calls := load.snapshot()
	total := summarizeBackendFault(calls, time.Time{}, "")
	t.Logf("in all: %s", total)
	for _, c := range backendFaultFailuresOtherThan(calls, codes.Unavailable) {
		t.Errorf("a call (stream %v, on %q) failed with %v, want UNAVAILABLE", c.stream, c.server, c.err)
	}
	// The relay may cut a response between its headers and its end: such
	// a call is not retried, its backend having taken it. The others must
	// be, but for those grpc-go fails (see neverSentNotRetried).
	if n := total.unretriedUnary(); n > 0 {
		t.Errorf("%d idempotent unary calls failed before their response began, want them retried; the first: %v",
			n, firstUnaryFailure(calls))
	}
}

// firstUnaryFailure returns the error of the first unary call that failed
// before its response began.
func firstUnaryFailure(calls []backendFaultCall) error {
	for _, c := range calls {
		if !c.stream && c.err != nil && !c.answering && !neverSentNotRetried(c.err) {
			return c.err
		}
	}
	return nil
}

// TestFaultBackendNotServing turns a backend NOT_SERVING under load: once
// its health watch reports it, it gets no new call; the calls on it
// finish; no call fails.
func TestFaultBackendNotServing(t *testing.T) {
	ctx := backendFaultContext(t)
	rounds, perPhase := backendFaultRounds()
	names := []string{"b0", "b1", "b2"}
	backends := []*backend{startBackend(t, names[0]), startBackend(t, names[1]), startBackend(t, names[2])}
	addrs := []string{backends[0].addr, backends[1].addr, backends[2].addr}
	env := startBackendFaultEnv(t, addrs, backendFaultOptions{})
	env.warmUp(ctx, t, "b0", "b1", "b2")
	load := startBackendFaultLoad(ctx, t, env.echo)
	for round := range rounds {
		load.waitCalls(ctx, t, perPhase)
		i := round % len(backends)
		victim, state := backends[i], env.state(t, addrs[i])
		mark, at := load.completed(), time.Now()
		victim.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		testwait.For(ctx, t, "the health watch to report NOT_SERVING", func() bool { return !state.Healthy() })
		reported := time.Now()
		load.waitNoPicks(ctx, t, state, 100)
		load.waitCalls(ctx, t, perPhase)
		late := summarizeBackendFault(load.snapshot()[mark:], reported, names[i])
		t.Logf("NOT_SERVING %d: reported after %s; calls placed on it after the report: %d, the last %s after; %s",
			round+1, reported.Sub(at).Round(time.Millisecond), late.victimStarts, late.clean.Round(time.Millisecond),
			summarizeBackendFault(load.snapshot()[mark:], at, names[i]))
		victim.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		if round+1 < rounds {
			env.warmUp(ctx, t, names[i])
		}
	}
	load.stopAndWait()
	calls := load.snapshot()
	total := summarizeBackendFault(calls, time.Time{}, "")
	t.Logf("in all: %s", total)
	for _, c := range backendFaultFailuresOtherThan(calls) {
		t.Errorf("a call (stream %v, on %q) failed: %v", c.stream, c.server, c.err)
	}
}
