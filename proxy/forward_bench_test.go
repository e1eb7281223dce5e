package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// The forwarding benchmarks measure what a call costs through the proxy
// against the same call made directly to the backend, all in this process
// on loopback: allocs/op and B/op (deterministic enough to compare
// changes), and cpu-ns/op, the process's CPU time (user + system) per
// call, which counts the client, the proxy and the backend together. The
// proxy's own cost is the difference between the quaestor and direct
// figures.
//
//	go test -run '^$' -bench 'Forward(Unary|Stream)$' -benchmem -count 6 ./proxy/ | benchstat -
//
// They also report the read and write system calls per op (from
// /proc/self/io, Linux only), which do not depend on the machine's load.

// benchConns is the number of client connections the callers share, as in
// bench/'s unary-16 scenario.
const benchConns = 4

// benchTarget starts what a benchmark calls and returns the addresses its
// clients dial.
type benchTarget func(b *testing.B) []string

// directTarget is the backend itself.
func directTarget(b *testing.B) []string {
	return []string{startBenchBackend(b)}
}

// quaestorTarget is a proxy in front of the backend, built with the
// router's and the server's default options plus those given.
func quaestorTarget(dialOpts []grpc.DialOption, serverOpts []grpc.ServerOption) benchTarget {
	return quaestorStatsTarget(dialOpts, serverOpts, nil)
}

// quaestorStatsTarget is quaestorTarget with a stats handler on the
// proxy's server, as cmd/quaestor installs for its metrics.
func quaestorStatsTarget(dialOpts []grpc.DialOption, serverOpts []grpc.ServerOption, sh stats.Handler) benchTarget {
	return func(b *testing.B) []string {
		backend := startBenchBackend(b)
		table := routing.NewTable()
		if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: echoService, Endpoints: []string{backend}}}); err != nil {
			b.Fatal(err)
		}
		router := newTestRouter(b, routing.Options{Table: table, Logger: quietLog, DialOptions: dialOpts})
		addr, _ := serveProxy(b, proxy.Options{Config: proxy.DefaultConfig(), Router: router, ServerOptions: serverOpts, StatsHandler: sh})
		return []string{addr}
	}
}

// startBenchBackend serves Echo on loopback until the benchmark ends.
func startBenchBackend(b *testing.B) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: "bench"}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	b.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// benchClients dials benchConns connections to addr, spread over addrs.
func benchClients(b *testing.B, addrs []string) []examplev1.EchoClient {
	clients := make([]examplev1.EchoClient, benchConns)
	for i := range clients {
		cc, err := grpc.NewClient(addrs[i%len(addrs)],
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cc.Close() })
		clients[i] = examplev1.NewEchoClient(cc)
	}
	return clients
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// syscalls returns the process's read and write system calls so far, from
// /proc/self/io; ok is false where that file is missing.
func syscalls() (reads, writes int64, ok bool) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(data)) {
		key, value, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseInt(value, 10, 64)
		switch key {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, true
}

// measure runs the timed part of a benchmark and reports, besides the
// testing package's figures, the CPU time and the read and write system
// calls per op.
func measure(b *testing.B, run func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	reads, writes, ok := syscalls()
	run()
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	if r, w, ok2 := syscalls(); ok && ok2 {
		b.ReportMetric(float64(r-reads)/float64(b.N), "reads/op")
		b.ReportMetric(float64(w-writes)/float64(b.N), "writes/op")
	}
}

// benchTargets are the targets every scenario runs against.
var benchTargets = []struct {
	name   string
	target benchTarget
}{
	{"direct", directTarget},
	{"quaestor", quaestorTarget(nil, nil)},
}

// variantTargets are quaestor with transport settings and extras whose
// cost bench/optimizations.md reports; BenchmarkForward*Variants run them.
var variantTargets = []struct {
	name   string
	target benchTarget
}{
	// The server runs handlers on a pool of goroutines instead of one new
	// goroutine per call.
	{"workers4", quaestorTarget(nil, []grpc.ServerOption{grpc.NumStreamWorkers(4)})},
	{"workers64", quaestorTarget(nil, []grpc.ServerOption{grpc.NumStreamWorkers(64)})},
	// Retries off: what gRPC's retry buffering costs (transparent retries
	// still buffer).
	{"noretry", quaestorTarget([]grpc.DialOption{grpc.WithDisableRetry()}, nil)},
	// A stats handler on the proxy's server, as cmd/quaestor's metrics.
	{"stats", quaestorStatsTarget(nil, nil, new(countingStats))},
	// Larger transport buffers: fewer system calls for large messages.
	{"buf256k", quaestorTarget(
		[]grpc.DialOption{grpc.WithReadBufferSize(256 << 10), grpc.WithWriteBufferSize(256 << 10)},
		[]grpc.ServerOption{grpc.WriteBufferSize(256 << 10)})},
	// Static large flow-control windows instead of BDP estimation.
	{"win16m", quaestorTarget(
		[]grpc.DialOption{grpc.WithStaticStreamWindowSize(16 << 20), grpc.WithStaticConnWindowSize(64 << 20)},
		[]grpc.ServerOption{grpc.StaticStreamWindowSize(16 << 20), grpc.StaticConnWindowSize(64 << 20)})},
}

// countingStats is a stats handler that counts what it sees, the least a
// metrics handler does.
type countingStats struct{ begins, payloads, ends atomic.Int64 }

func (c *countingStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (c *countingStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin:
		c.begins.Add(1)
	case *stats.InPayload, *stats.OutPayload:
		c.payloads.Add(1)
	case *stats.End:
		c.ends.Add(1)
	}
}

func (c *countingStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (c *countingStats) HandleConn(context.Context, stats.ConnStats) {}

func BenchmarkForwardUnary(b *testing.B) {
	for _, tc := range benchTargets {
		b.Run(tc.name, func(b *testing.B) { benchUnary(b, tc.target) })
	}
}

func BenchmarkForwardStream(b *testing.B) {
	for _, tc := range benchTargets {
		b.Run(tc.name, func(b *testing.B) { benchServerStream(b, tc.target) })
	}
}

func BenchmarkForwardUnaryVariants(b *testing.B) {
	for _, tc := range variantTargets {
		b.Run(tc.name, func(b *testing.B) { benchUnary(b, tc.target) })
	}
}

func BenchmarkForwardStreamVariants(b *testing.B) {
	for _, tc := range variantTargets {
		b.Run(tc.name, func(b *testing.B) { benchServerStream(b, tc.target) })
	}
}

// benchUnary makes 100-byte unary calls from 16 callers (8 per CPU on the
// 2-CPU machines this runs on) over benchConns connections.
func benchUnary(b *testing.B, target benchTarget) {
	clients := benchClients(b, target(b))
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	req := &examplev1.EchoRequest{Payload: make([]byte, 100)}
	// Warm up every connection, so that dialling is not measured.
	for _, c := range clients {
		if _, err := c.Unary(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(8)
	measure(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			c := clients[next.Add(1)%benchConns]
			for pb.Next() {
				if _, err := c.Unary(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// streamResponses and streamResponseSize shape one server-streaming call
// of the stream benchmark: an op is one call of 16 × 1 MiB responses.
const (
	streamResponses    = 16
	streamResponseSize = 1 << 20
)

// benchServerStream makes server-streaming calls of 1 MiB responses from
// benchConns callers, one per connection.
func benchServerStream(b *testing.B, target benchTarget) {
	clients := benchClients(b, target(b))
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	req := &examplev1.EchoRequest{ResponseSize: streamResponseSize, ResponseCount: streamResponses}
	for _, c := range clients {
		if err := drainServerStream(ctx, c, req); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetBytes(streamResponses * streamResponseSize)
	b.SetParallelism(benchConns/2 + 1) // ≥ benchConns callers on 2 CPUs
	measure(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			c := clients[next.Add(1)%benchConns]
			for pb.Next() {
				if err := drainServerStream(ctx, c, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// drainServerStream makes one server-streaming call and reads it to its
// end.
func drainServerStream(ctx context.Context, c examplev1.EchoClient, req *examplev1.EchoRequest) error {
	stream, err := c.ServerStream(ctx, req)
	if err != nil {
		return err
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if len(resp.GetPayload()) != int(req.GetResponseSize()) {
			return errors.New("short response")
		}
		n++
	}
	if n != int(req.GetResponseCount()) {
		return errors.New("missing responses")
	}
	return nil
}
