package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// The backend fault tests (faults_backend_test.go) run steady load through
// a proxy whose routing is wired as cmd/quaestor wires it (a Monitor
// checking health, passive ejection, the Router with retries), inject a
// fault, and report what the callers saw. Their long versions run with
// CHAOS=1 (make chaos).

// backendFaultChaos reports whether the long versions run.
func backendFaultChaos() bool { return os.Getenv("CHAOS") == "1" }

// backendFaultEnv is a proxy over static endpoints of the Echo service,
// with active health checks and the retry policy under test.
type backendFaultEnv struct {
	table *routing.Table
	addrs []string
	echo  examplev1.EchoClient
}

type backendFaultOptions struct {
	// idempotent lists Echo/Unary as idempotent.
	idempotent bool
	// keepalive pings backend connections (calls and probes) after 10s
	// of silence, and gives up after 1s.
	keepalive bool
}

func startBackendFaultEnv(t *testing.T, addrs []string, o backendFaultOptions) *backendFaultEnv {
	t.Helper()
	env := &backendFaultEnv{table: routing.NewTable()}
	env.setEndpoints(t, addrs)
	health := routing.DefaultHealthConfig()
	health.Interval = 200 * time.Millisecond
	health.Timeout = 500 * time.Millisecond
	var backend routing.BackendConfig
	if o.keepalive {
		backend = routing.BackendConfig{KeepaliveTime: 10 * time.Second, KeepaliveTimeout: time.Second}
	}
	var retry routing.RetryConfig
	if o.idempotent {
		retry.IdempotentMethods = []string{echoService + "/Unary"}
	}
	router := newTestRouter(t, routing.Options{Table: env.table, Retry: retry, Backend: backend, Logger: quietLog})
	addr, srv := serveProxy(t, proxy.Options{Config: proxy.DefaultConfig(), Router: router, Backends: backend})
	// As quaestor runs it: the checks go through the proxy, and stop
	// before it does.
	monitor, err := routing.StartMonitor(routing.MonitorOptions{
		Table:   env.table,
		Health:  health,
		Load:    routing.DefaultLoadConfig(),
		Connect: srv.ProbeConn,
		Logger:  quietLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(monitor.Close)
	env.echo = examplev1.NewEchoClient(dial(t, addr))
	return env
}

// setEndpoints replaces the static endpoints of Echo.
func (e *backendFaultEnv) setEndpoints(t *testing.T, addrs []string) {
	t.Helper()
	e.addrs = slices.Clone(addrs)
	if err := routing.LoadStatic(e.table, []routing.ServiceConfig{{Name: echoService, Endpoints: addrs}}); err != nil {
		t.Fatal(err)
	}
}

// state returns the table's state of the Echo endpoint addr.
func (e *backendFaultEnv) state(t *testing.T, addr string) *routing.EndpointState {
	t.Helper()
	eps, _ := e.table.Endpoints(echoService)
	for _, ep := range eps {
		if ep.Addr == addr {
			return ep.State
		}
	}
	t.Fatalf("no endpoint %s in the table", addr)
	return nil
}

// warmUp calls until each of servers has answered.
func (e *backendFaultEnv) warmUp(ctx context.Context, t *testing.T, servers ...string) {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < len(servers) {
		if ctx.Err() != nil {
			t.Fatalf("warming up: only %v of %v answered", seen, servers)
		}
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := e.echo.Unary(callCtx, &examplev1.EchoRequest{})
		cancel()
		if err == nil && slices.Contains(servers, resp.GetServer()) {
			seen[resp.GetServer()] = true
		}
	}
}

// backendFaultCall is one call of the load.
type backendFaultCall struct {
	stream     bool
	start, end time.Time
	// server answered the call (a stream's first response); empty when
	// nothing came.
	server string
	// answering is set when the response had begun (headers came): a
	// call that fails then cannot be retried, its backend having taken it.
	answering bool
	err       error
}

// backendFaultLoad is steady load: unary calls from several goroutines
// and server streams from others, each with a deadline, until stopped.
type backendFaultLoad struct {
	echo examplev1.EchoClient
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	calls []backendFaultCall
	// done is signalled (without blocking) whenever a call ends.
	done chan struct{}
}

const (
	backendFaultUnaryWorkers  = 6
	backendFaultStreamWorkers = 6
	// Unary calls take a few milliseconds, so that a fault finds some in
	// flight; streams send 50 responses 20ms apart. The deadlines leave
	// room for a slow shared machine: a call that reaches one hung.
	backendFaultUnaryDelay     = 5 * time.Millisecond
	backendFaultStreamMessages = 50
	backendFaultStreamDelay    = 20 * time.Millisecond
	backendFaultUnaryDeadline  = 5 * time.Second
	backendFaultStreamDeadline = 20 * time.Second
)

// startBackendFaultLoad starts the load; it runs until stopAndWait or
// until ctx ends.
func startBackendFaultLoad(ctx context.Context, t *testing.T, echo examplev1.EchoClient) *backendFaultLoad {
	l := &backendFaultLoad{echo: echo, stop: make(chan struct{}), done: make(chan struct{}, 1)}
	for range backendFaultUnaryWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for l.running(ctx) {
				l.record(l.unary(ctx))
			}
		}()
	}
	for range backendFaultStreamWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for l.running(ctx) {
				l.record(l.serverStream(ctx))
			}
		}()
	}
	t.Cleanup(l.stopAndWait)
	return l
}

func (l *backendFaultLoad) running(ctx context.Context) bool {
	select {
	case <-l.stop:
		return false
	case <-ctx.Done():
		return false
	default:
		return true
	}
}

func (l *backendFaultLoad) unary(ctx context.Context) backendFaultCall {
	call := backendFaultCall{start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, backendFaultUnaryDeadline)
	defer cancel()
	var header metadata.MD
	resp, err := l.echo.Unary(ctx, &examplev1.EchoRequest{Delay: durationpb.New(backendFaultUnaryDelay)}, grpc.Header(&header))
	call.end, call.err, call.server = time.Now(), err, resp.GetServer()
	call.answering = len(header.Get(echo.ServerHeader)) > 0
	return call
}

func (l *backendFaultLoad) serverStream(ctx context.Context) backendFaultCall {
	call := backendFaultCall{stream: true, start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, backendFaultStreamDeadline)
	defer cancel()
	stream, err := l.echo.ServerStream(ctx, &examplev1.EchoRequest{
		ResponseCount: backendFaultStreamMessages, Delay: durationpb.New(backendFaultStreamDelay)})
	for err == nil {
		var resp *examplev1.EchoResponse
		if resp, err = stream.Recv(); err == nil && call.server == "" {
			call.server = resp.GetServer()
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	call.end, call.err = time.Now(), err
	return call
}

func (l *backendFaultLoad) record(c backendFaultCall) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	select {
	case l.done <- struct{}{}:
	default:
	}
}

// completed returns how many calls have ended.
func (l *backendFaultLoad) completed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// waitCalls waits until n more calls have ended.
func (l *backendFaultLoad) waitCalls(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	want := l.completed() + n
	for l.completed() < want {
		select {
		case <-ctx.Done():
			t.Fatalf("the load completed %d calls, waited for %d", l.completed(), want)
		case <-l.done:
		}
	}
}

// waitNoPicks waits until n calls in a row have ended with state neither
// picked nor holding a call: routing has stopped placing calls on it.
func (l *backendFaultLoad) waitNoPicks(ctx context.Context, t *testing.T, state *routing.EndpointState, n int) {
	t.Helper()
	for {
		picks := state.Picks()
		l.waitCalls(ctx, t, n)
		if state.Picks() == picks && state.InFlight() == 0 {
			return
		}
	}
}

func (l *backendFaultLoad) stopAndWait() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// snapshot returns the calls ended so far.
func (l *backendFaultLoad) snapshot() []backendFaultCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// backendFaultReport sums up the calls around one fault at time at, of the
// endpoint victim (the name its Echo answers with).
type backendFaultReport struct {
	at                         time.Time
	unary, streams             int
	failedUnary, failedStreams int
	// failedAnswering counts the unary calls that failed after their
	// response had begun, failedNeverSent those that failed with
	// "transport is closing" (see neverSentNotRetried).
	failedAnswering, failedNeverSent int
	// codes counts the failures by status code.
	codes map[codes.Code]int
	// clean is how long after the fault the last call was started that
	// failed or was placed on the victim: after it, routing was clean.
	clean time.Duration
	// lastFailure is how long after the fault the last failed call ended.
	lastFailure time.Duration
	// victimStreams counts the streams on the victim when the fault came,
	// brokenStreams those of them that failed, and streamEnd is the
	// longest one of those ran on after the fault.
	victimStreams, brokenStreams int
	streamEnd                    time.Duration
	// victimStarts counts the calls started after the fault that the
	// victim answered.
	victimStarts int
}

// summarizeBackendFault reports on calls; with a zero at, only the counts.
func summarizeBackendFault(calls []backendFaultCall, at time.Time, victim string) backendFaultReport {
	r := backendFaultReport{at: at, codes: map[codes.Code]int{}}
	for _, c := range calls {
		if c.stream {
			r.streams++
		} else {
			r.unary++
		}
		bad := victim != "" && c.server == victim && c.start.After(at)
		if bad {
			r.victimStarts++
		}
		if c.stream && victim != "" && c.server == victim && c.start.Before(at) && c.end.After(at) {
			r.victimStreams++
			if c.err != nil {
				r.brokenStreams++
				r.streamEnd = max(r.streamEnd, c.end.Sub(at))
			}
		}
		if c.err != nil {
			bad = true
			r.lastFailure = max(r.lastFailure, c.end.Sub(at))
			r.codes[status.Code(c.err)]++
			if c.stream {
				r.failedStreams++
			} else {
				r.failedUnary++
				switch {
				case c.answering:
					r.failedAnswering++
				case neverSentNotRetried(c.err):
					r.failedNeverSent++
				}
			}
		}
		if bad {
			r.clean = max(r.clean, c.start.Sub(at))
		}
	}
	return r
}

func (r backendFaultReport) String() string {
	var codes []string
	for code, n := range r.codes {
		codes = append(codes, fmt.Sprintf("%s×%d", code, n))
	}
	slices.Sort(codes)
	s := fmt.Sprintf("unary %d failed of %d (%d after their response began, %d never sent), streams %d failed of %d (%s)",
		r.failedUnary, r.unary, r.failedAnswering, r.failedNeverSent, r.failedStreams, r.streams, strings.Join(codes, " "))
	if r.at.IsZero() {
		return s
	}
	return s + fmt.Sprintf("; last failure ended %s after the fault; routing clean %s after it (last call started that failed or went to the victim); "+
		"streams on the victim: %d, %d broken, ended within %s; calls started on the victim after the fault: %d",
		r.lastFailure.Round(time.Millisecond), r.clean.Round(time.Millisecond), r.victimStreams, r.brokenStreams, r.streamEnd.Round(time.Millisecond), r.victimStarts)
}

// neverSentNotRetried reports a call that failed because the connection
// it was placed on closed before its request went out, and that gRPC
// did not retry: grpc-go (1.85) closes such a stream without a status,
// so the Header call with which the proxy waits for the response headers
// returns no error, which commits the attempt, and the call fails with
// "transport is closing" instead of being retried transparently.
func neverSentNotRetried(err error) bool {
	st := status.Convert(err)
	return st.Code() == codes.Unavailable && st.Message() == "transport is closing"
}

// unretriedUnary returns how many unary calls failed that should have
// been retried: neither answering nor lost as neverSentNotRetried says.
func (r backendFaultReport) unretriedUnary() int {
	return r.failedUnary - r.failedAnswering - r.failedNeverSent
}

// backendFaultFailuresOtherThan returns the failed calls whose code is not one of
// allowed.
func backendFaultFailuresOtherThan(calls []backendFaultCall, allowed ...codes.Code) []backendFaultCall {
	var odd []backendFaultCall
	for _, c := range calls {
		if c.err != nil && !slices.Contains(allowed, status.Code(c.err)) {
			odd = append(odd, c)
		}
	}
	return odd
}
