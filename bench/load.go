package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// callKind is the Echo method a scenario calls.
type callKind int

const (
	unaryCall callKind = iota
	serverStreamCall
	// bidiPingPong keeps one bidi stream per caller open for the whole
	// loop and sends one message, then waits for its echo, again and
	// again: each round trip counts as a call.
	bidiPingPong
)

// A scenario is one closed-loop workload: callers goroutines, spread
// round-robin over conns client connections, each making one call after
// another until the time is up.
type scenario struct {
	name    string
	kind    callKind
	callers int
	conns   int
	// payloadSize is the size of the request payload, echoed back by
	// unary calls.
	payloadSize int
	// responseSize and responseCount ask a server stream for
	// responseCount responses of responseSize bytes each.
	responseSize  int
	responseCount int
	// instances, when not 0, makes this a registry scenario: measured
	// through a quaestor that discovers that many registered instances in
	// etcd, and through no other target.
	instances int
}

// defaultScenarios are the workloads `go run ./bench` measures.
func defaultScenarios() []scenario {
	return []scenario{
		{name: "unary-16", kind: unaryCall, callers: 16, conns: 4, payloadSize: 100},
		{name: "unary-256", kind: unaryCall, callers: 256, conns: 4, payloadSize: 100},
		{name: "stream-1MiB", kind: serverStreamCall, callers: 4, conns: 4, responseSize: 1 << 20, responseCount: 64},
		{name: "bidi-pingpong", kind: bidiPingPong, callers: 16, conns: 4, payloadSize: 100},
		instanceScenario(1),
		instanceScenario(10),
		instanceScenario(100),
		instanceScenario(1000),
	}
}

// instanceScenario is unary-16 through a quaestor routing over n
// registered instances.
func instanceScenario(n int) scenario {
	return scenario{name: fmt.Sprintf("instances-%d", n), kind: unaryCall, callers: 16, conns: 4, payloadSize: 100, instances: n}
}

// describe says what the scenario does, for the report.
func (sc scenario) describe() string {
	switch {
	case sc.instances > 0:
		return fmt.Sprintf("unary calls with a %s payload echoed back, %d callers over %d connections, through quaestor routing over %d instances registered in etcd",
			formatBytes(sc.payloadSize), sc.callers, sc.conns, sc.instances)
	case sc.kind == bidiPingPong:
		return fmt.Sprintf("bidi ping-pong: %d streams over %d connections, each sending a %s message and waiting for its echo, again and again",
			sc.callers, sc.conns, formatBytes(sc.payloadSize))
	case sc.kind == serverStreamCall:
		return fmt.Sprintf("server stream of %d × %s responses per call, %d callers over %d connections",
			sc.responseCount, formatBytes(sc.responseSize), sc.callers, sc.conns)
	default:
		return fmt.Sprintf("unary calls with a %s payload echoed back, %d callers over %d connections",
			formatBytes(sc.payloadSize), sc.callers, sc.conns)
	}
}

// maxMessageSize is the message size limit of every client and server in
// the harness, large enough never to be the limit.
const maxMessageSize = 64 << 20

// loadSettings bound one measurement.
type loadSettings struct {
	// warmup runs the load, unrecorded, on the same connections before
	// measuring.
	warmup time.Duration
	// duration is how long workers start new calls for; calls running at
	// its end are finished and counted.
	duration time.Duration
	// callTimeout bounds each call, so that a stuck call cannot hold the
	// run; a call that hits it counts as an error.
	callTimeout time.Duration
}

// cpuTimes is the CPU time of processes, as /proc/<pid>/stat splits it.
type cpuTimes struct {
	user   time.Duration // in the process itself
	system time.Duration // in the kernel on its behalf
}

func (c cpuTimes) total() time.Duration { return c.user + c.system }

// maxErrorSamples is how many distinct error messages a result keeps.
const maxErrorSamples = 5

// result is what one measurement of one scenario against one target saw.
type result struct {
	// elapsed runs from the start of the measurement to the end of the
	// last call.
	elapsed  time.Duration
	calls    int64 // calls that succeeded
	errors   int64 // calls that failed or answered wrongly
	messages int64 // responses received by successful calls
	bytes    int64 // response payload bytes received by successful calls
	// callLatency is the time of each successful call, from its start to
	// its status.
	callLatency *histogram
	// messageGap, for streams, is the time from the call's start to its
	// first response and from each response to the next.
	messageGap   *histogram
	errorSamples []string
	// cpu is the CPU time the harness's process (the load generator) used
	// during the measurement; cpuKnown is false where the platform does
	// not tell.
	cpu      time.Duration
	cpuKnown bool
	// proxyCPU is the CPU time (user + system, from /proc/<pid>/stat) of
	// the proxy's processes during the measurement, proxySystem the part
	// spent in the kernel; proxyCPUKnown is false for direct or where
	// /proc is missing.
	proxyCPU      time.Duration
	proxySystem   time.Duration
	proxyCPUKnown bool
	// backendCPU is the backend process's CPU time during the
	// measurement: what a proxy in the path adds to or takes from the
	// backend's work; backendCPUKnown is false where /proc is missing.
	backendCPU      time.Duration
	backendCPUKnown bool
	// proxyPeakMem is the sum of the proxy processes' resident-set
	// high-water marks (VmHWM) over the measurement: reset after the
	// warm-up by writing 5 to /proc/<pid>/clear_refs. (Reset before it,
	// the mark started from what the previous scenario had left: a
	// proxy's memory after a stream scenario takes a second or two to go
	// back to the system.)
	proxyPeakMem  int64
	proxyMemKnown bool
}

func newResult() *result {
	return &result{callLatency: newHistogram(), messageGap: newHistogram()}
}

// callsPerSecond is the rate of successful calls.
func (r *result) callsPerSecond() float64 { return perSecond(r.calls, r.elapsed) }

// messagesPerSecond is the rate of responses received.
func (r *result) messagesPerSecond() float64 { return perSecond(r.messages, r.elapsed) }

// proxyCPUPer10k is the proxy's CPU time per 10,000 messages received
// (calls for unary, round trips for ping-pong, responses for streams), or
// NaN when unknown.
func (r *result) proxyCPUPer10k() float64 {
	if !r.proxyCPUKnown || r.messages == 0 {
		return math.NaN()
	}
	return r.proxyCPU.Seconds() * 1e4 / float64(r.messages)
}

// proxySystemShare is the part of the proxy's CPU time spent in the
// kernel (system calls, and on loopback the receiving side's TCP work
// that a send runs), or NaN when unknown.
func (r *result) proxySystemShare() float64 {
	if !r.proxyCPUKnown || r.proxyCPU <= 0 {
		return math.NaN()
	}
	return r.proxySystem.Seconds() / r.proxyCPU.Seconds()
}

// proxyCores is the average number of CPUs the proxy kept busy, or NaN.
func (r *result) proxyCores() float64 {
	if !r.proxyCPUKnown || r.elapsed <= 0 {
		return math.NaN()
	}
	return r.proxyCPU.Seconds() / r.elapsed.Seconds()
}

// cores is the average number of CPUs the process kept busy, or NaN when
// unknown. Below GOMAXPROCS in a saturating scenario, something else on
// the machine was taking CPU time.
func (r *result) cores() float64 {
	if !r.cpuKnown || r.elapsed <= 0 {
		return math.NaN()
	}
	return r.cpu.Seconds() / r.elapsed.Seconds()
}

// cpuPerWork is the load generator's CPU time per successful call, or
// per MiB of response payload for streams; 0 when unknown. Unlike
// throughput, it barely moves when other work takes CPUs away.
func (r *result) cpuPerWork(kind callKind) time.Duration {
	return r.perWork(kind, r.cpu, r.cpuKnown)
}

// backendCPUPerWork is the backend's CPU time per call, or per MiB for
// streams; 0 when unknown.
func (r *result) backendCPUPerWork(kind callKind) time.Duration {
	return r.perWork(kind, r.backendCPU, r.backendCPUKnown)
}

func (r *result) perWork(kind callKind, cpu time.Duration, known bool) time.Duration {
	switch {
	case !known:
		return 0
	case kind == serverStreamCall && r.bytes > 0:
		return time.Duration(float64(cpu) * (1 << 20) / float64(r.bytes))
	case kind != serverStreamCall && r.calls > 0:
		return cpu / time.Duration(r.calls)
	}
	return 0
}

// mebibytesPerSecond is the rate of response payload received, in MiB/s.
func (r *result) mebibytesPerSecond() float64 { return perSecond(r.bytes, r.elapsed) / (1 << 20) }

func perSecond(n int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

// fail counts a failed call and keeps its message if it is a new one.
func (r *result) fail(err error) {
	r.errors++
	msg := err.Error()
	if len(r.errorSamples) < maxErrorSamples && !slices.Contains(r.errorSamples, msg) {
		r.errorSamples = append(r.errorSamples, msg)
	}
}

// merge adds what a worker saw to r.
func (r *result) merge(w *result) {
	r.calls += w.calls
	r.errors += w.errors
	r.messages += w.messages
	r.bytes += w.bytes
	r.callLatency.merge(w.callLatency)
	r.messageGap.merge(w.messageGap)
	for _, msg := range w.errorSamples {
		if len(r.errorSamples) < maxErrorSamples && !slices.Contains(r.errorSamples, msg) {
			r.errorSamples = append(r.errorSamples, msg)
		}
	}
}

// measure runs sc against the addresses of a target: it opens sc.conns
// client connections (the i-th to addrs[i % len(addrs)]), warms them up,
// measures, and closes them. It returns an error only when it could not
// run; failed calls are counted in the result.
func measure(ctx context.Context, t *target, sc scenario, settings loadSettings) (*result, error) {
	addrs := t.addrs
	if len(addrs) == 0 {
		return nil, errors.New("measuring: no address to call")
	}
	clients := make([]examplev1.EchoClient, sc.conns)
	for i := range clients {
		addr := addrs[i%len(addrs)]
		cc, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(
				grpc.MaxCallRecvMsgSize(maxMessageSize),
				grpc.MaxCallSendMsgSize(maxMessageSize)))
		if err != nil {
			return nil, fmt.Errorf("measuring: connecting to %s: %w", addr, err)
		}
		defer cc.Close()
		clients[i] = examplev1.NewEchoClient(cc)
	}
	if settings.warmup > 0 {
		runLoop(ctx, clients, sc, settings.warmup, settings.callTimeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("measuring: %w", err)
	}
	memKnown := resetPeakMemory(t.pids)
	proxyStart, proxyKnown := treeCPUTime(t.pids)
	backendStart, backendKnown := treeCPUTime(t.backendPids)
	res := runLoop(ctx, clients, sc, settings.duration, settings.callTimeout)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("measuring: %w", err)
	}
	if proxyEnd, ok := treeCPUTime(t.pids); ok && proxyKnown {
		res.proxyCPU = proxyEnd.total() - proxyStart.total()
		res.proxySystem, res.proxyCPUKnown = proxyEnd.system-proxyStart.system, true
	}
	if backendEnd, ok := treeCPUTime(t.backendPids); ok && backendKnown {
		res.backendCPU, res.backendCPUKnown = backendEnd.total()-backendStart.total(), true
	}
	if peak, ok := peakMemory(t.pids); ok && memKnown {
		res.proxyPeakMem, res.proxyMemKnown = peak, true
	}
	if err := t.procExit(); err != nil {
		return nil, err
	}
	return res, nil
}

// runLoop runs sc's callers over clients for duration and returns what they
// saw. It returns once every caller has finished its last call: at most
// callTimeout after duration, or soon after ctx is done.
func runLoop(ctx context.Context, clients []examplev1.EchoClient, sc scenario, duration, callTimeout time.Duration) *result {
	// One context bounds every call: it outlives the loop by callTimeout,
	// so a call started just before the end can finish.
	loopCtx, cancel := context.WithTimeout(ctx, duration+callTimeout)
	defer cancel()
	workers := make([]*result, sc.callers)
	var wg sync.WaitGroup
	cpuStart, cpuKnown := processCPUTime()
	start := time.Now()
	end := start.Add(duration)
	for i := range workers {
		w := &worker{client: clients[i%len(clients)], sc: sc, res: newResult()}
		workers[i] = w.res
		wg.Go(func() { w.run(loopCtx, end) })
	}
	wg.Wait()
	total := newResult()
	total.elapsed = time.Since(start)
	if cpuEnd, ok := processCPUTime(); ok && cpuKnown {
		total.cpu, total.cpuKnown = cpuEnd-cpuStart, true
	}
	for _, w := range workers {
		total.merge(w)
	}
	return total
}

// worker is one caller of a closed loop. Its result is its own until the
// loop is done.
type worker struct {
	client examplev1.EchoClient
	sc     scenario
	res    *result
}

// run makes one call after another until end or until ctx is done.
func (w *worker) run(ctx context.Context, end time.Time) {
	req := &examplev1.EchoRequest{
		Payload:       make([]byte, w.sc.payloadSize),
		ResponseSize:  int32(w.sc.responseSize),
		ResponseCount: int32(w.sc.responseCount),
	}
	call := w.unary
	switch w.sc.kind {
	case serverStreamCall:
		call = w.serverStream
	case bidiPingPong:
		w.pingPong(ctx, req, end)
		return
	}
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(end) {
			return
		}
		if err := call(ctx, req, start); err != nil {
			w.res.fail(err)
			continue
		}
		w.res.callLatency.record(time.Since(start))
		w.res.calls++
	}
}

// unary makes one unary call and checks that the payload came back.
func (w *worker) unary(ctx context.Context, req *examplev1.EchoRequest, _ time.Time) error {
	resp, err := w.client.Unary(ctx, req)
	if err != nil {
		return err
	}
	if got := len(resp.GetPayload()); got != len(req.GetPayload()) {
		return fmt.Errorf("unary: got a %d-byte payload back, sent %d bytes", got, len(req.GetPayload()))
	}
	w.res.messages++
	w.res.bytes += int64(len(resp.GetPayload()))
	return nil
}

// serverStream makes one server-streaming call, recording the gap before
// each response, and checks the number and size of the responses.
func (w *worker) serverStream(ctx context.Context, req *examplev1.EchoRequest, start time.Time) error {
	// Leaving a stream before its end must cancel it, or it would live on
	// until the loop's context ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.client.ServerStream(ctx, req)
	if err != nil {
		return err
	}
	var (
		messages int64
		bytes    int64
		last     = start
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		now := time.Now()
		w.res.messageGap.record(now.Sub(last))
		last = now
		if got := len(resp.GetPayload()); got != int(req.GetResponseSize()) {
			return fmt.Errorf("server stream: response %d has %d payload bytes, want %d", messages+1, got, req.GetResponseSize())
		}
		messages++
		bytes += int64(len(resp.GetPayload()))
	}
	if messages != int64(req.GetResponseCount()) {
		return fmt.Errorf("server stream: got %d responses, want %d", messages, req.GetResponseCount())
	}
	w.res.messages += messages
	w.res.bytes += bytes
	return nil
}

// pingPong keeps one bidi stream open and makes round trips on it until
// end: one message sent, its echo received. A failed stream counts one
// error and is opened again.
func (w *worker) pingPong(ctx context.Context, req *examplev1.EchoRequest, end time.Time) {
	for ctx.Err() == nil && time.Now().Before(end) {
		if err := w.pingPongStream(ctx, req, end); err != nil {
			w.res.fail(err)
		}
	}
}

func (w *worker) pingPongStream(ctx context.Context, req *examplev1.EchoRequest, end time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.client.BidiStream(ctx)
	if err != nil {
		return err
	}
	for {
		start := time.Now()
		if !start.Before(end) {
			break
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("bidi: send: %w", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("bidi: receive: %w", err)
		}
		if got := len(resp.GetPayload()); got != len(req.GetPayload()) {
			return fmt.Errorf("bidi: got a %d-byte payload back, sent %d bytes", got, len(req.GetPayload()))
		}
		w.res.callLatency.record(time.Since(start))
		w.res.calls++
		w.res.messages++
		w.res.bytes += int64(len(resp.GetPayload()))
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("bidi: closing: %w", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("bidi: want the end of the stream after closing, got %v", err)
	}
	return nil
}
