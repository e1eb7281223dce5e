package loadreport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/quaestor-go/quaestor/internal/testwait"
	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every test; nothing here should come close.
const testTimeout = 10 * time.Second

// fakeMachine is a machine whose readings the test sets.
type fakeMachine struct {
	mu        sync.Mutex
	cpu       cpuTimes
	cpuErr    error
	memory    float64
	memoryErr error
	reads     int
}

func (f *fakeMachine) machine() machine {
	return machine{
		cpuTimes: func() (cpuTimes, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reads++
			return f.cpu, f.cpuErr
		},
		memoryPercent: func() (float64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.memory, f.memoryErr
		},
	}
}

// set changes the readings under the lock.
func (f *fakeMachine) set(change func(f *fakeMachine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeMachine) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// A quarter of the CPU busy since boot, 42.5% of the memory in use: the
// figures every test reporter starts with.
const (
	testCPU    = 0.25
	testMemory = 42.5
)

// testTime is the fixed clock of the test reporters.
var testTime = time.Date(2024, 1, 1, 0, 0, 0, 123456789, time.UTC)

// newTestReporter returns a reporter on a fixed clock and a fake machine,
// closed when the test ends.
func newTestReporter(t *testing.T, opts Options) *Reporter {
	t.Helper()
	m := &fakeMachine{cpu: cpuTimes{busy: 30, total: 120}, memory: testMemory}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	r := newReporter(opts, func() time.Time { return testTime }, m.machine())
	t.Cleanup(r.Close)
	return r
}

// blockHeader asks the blocker to hold a call until released.
const blockHeader = "x-block"

// blocker is a test service, loadreport.test.Blocker, with one unary and
// one bidi-streaming method. A call carrying blockHeader waits until
// release is closed (or the call ends); others return at once.
type blocker struct {
	release chan struct{}
}

func (b *blocker) serve(ctx context.Context) error {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(blockHeader)) == 0 {
		return nil
	}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

const (
	blockerUnary  = "/loadreport.test.Blocker/Unary"
	blockerStream = "/loadreport.test.Blocker/Stream"
)

var blockerDesc = grpc.ServiceDesc{
	ServiceName: "loadreport.test.Blocker",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, _ any) (any, error) {
				return &emptypb.Empty{}, srv.(*blocker).serve(ctx)
			}
			return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: blockerUnary}, handler)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		Handler:       func(srv any, ss grpc.ServerStream) error { return srv.(*blocker).serve(ss.Context()) },
		ServerStreams: true,
		ClientStreams: true,
	}},
}

// serve serves r with the blocker, health and reflection on loopback and
// returns a connection to it and the blocker; both stop when the test
// ends.
func serve(t *testing.T, r *Reporter) (*grpc.ClientConn, *blocker) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	gs := grpc.NewServer(r.ServerOptions()...)
	if err := r.Register(gs); err != nil {
		t.Fatalf("Register: %v", err)
	}
	b := &blocker{release: make(chan struct{})}
	gs.RegisterService(&blockerDesc, b)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	reflection.Register(gs)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gs.Serve(lis); err != nil {
			t.Errorf("serving: %v", err)
		}
	})
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialing %s: %v", lis.Addr(), err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, b
}

// callUnary calls the blocker's unary method, held until released when
// block is set.
func callUnary(ctx context.Context, cc *grpc.ClientConn, block bool, opts ...grpc.CallOption) error {
	if block {
		ctx = metadata.AppendToOutgoingContext(ctx, blockHeader, "1")
	}
	return cc.Invoke(ctx, blockerUnary, &emptypb.Empty{}, &emptypb.Empty{}, opts...)
}

// callStream calls the blocker's streaming method and waits for its end,
// returning its error (nil for OK) and its trailer.
func callStream(ctx context.Context, cc *grpc.ClientConn, block bool) (metadata.MD, error) {
	if block {
		ctx = metadata.AppendToOutgoingContext(ctx, blockHeader, "1")
	}
	stream, err := cc.NewStream(ctx, &blockerDesc.Streams[0], blockerStream)
	if err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	if err := stream.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return stream.Trailer(), err
	}
	return stream.Trailer(), nil
}

func reportLoad(ctx context.Context, t *testing.T, cc *grpc.ClientConn, req *loadreportingpb.LoadReportRequest, opts ...grpc.CallOption) *loadreportingpb.LoadReportResponse {
	t.Helper()
	resp, err := loadreportingpb.NewLoadReportingGrpcClient(cc).ReportLoad(ctx, req, opts...)
	if err != nil {
		t.Fatalf("ReportLoad: %v", err)
	}
	return resp
}

// openWatches opens a call to each service that is not load and receives
// a first message from each, so that each handler is running.
func openWatches(ctx context.Context, t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	watch, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("watching health: %v", err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("receiving health: %v", err)
	}
	oob, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{})
	if err != nil {
		t.Fatalf("streaming ORCA metrics: %v", err)
	}
	if _, err := oob.Recv(); err != nil {
		t.Fatalf("receiving ORCA metrics: %v", err)
	}
	refl, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("starting reflection: %v", err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("asking reflection: %v", err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("receiving reflection: %v", err)
	}
}

func TestInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	r := newTestReporter(t, Options{Capacity: 10})
	cc, b := serve(t, r)

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	openWatches(watchCtx, t, cc)
	if got := r.InFlight(); got != 0 {
		t.Errorf("InFlight with only health, reflection and ORCA streams open = %d, want 0", got)
	}

	errs := make(chan error, 3)
	go func() { errs <- callUnary(ctx, cc, true) }()
	go func() { errs <- callUnary(ctx, cc, true) }()
	go func() {
		_, err := callStream(ctx, cc, true)
		errs <- err
	}()
	testwait.For(ctx, t, "3 calls in flight", func() bool { return r.InFlight() == 3 })
	// ReportLoad is not load either: it sees the 3 calls, not 4.
	if got := reportLoad(ctx, t, cc, &loadreportingpb.LoadReportRequest{}).GetServerStats().GetCurrentRequests(); got != 3 {
		t.Errorf("current_requests = %d, want 3", got)
	}

	close(b.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("blocked call: %v", err)
		}
	}
	// The count drops before the status goes out.
	if got := r.InFlight(); got != 0 {
		t.Errorf("InFlight after the calls returned = %d, want 0", got)
	}
}

func TestCounted(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{method: "/quaestor.example.v1.Echo/Unary", want: true},
		{method: "/grpc.health.v1.Health/Watch", want: false},
		{method: "/grpc.health.v1.Health/Check", want: false},
		{method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", want: false},
		{method: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", want: false},
		{method: "/Quaestor.LoadReporting.LoadReportingGrpc/ReportLoad", want: false},
		{method: "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics", want: false},
		{method: "/grpc.health.v1.HealthX/Check", want: true},
		{method: "/grpc.health.v1/Health", want: true},
	}
	for _, tt := range tests {
		if got := counted(tt.method); got != tt.want {
			t.Errorf("counted(%q) = %v, want %v", tt.method, got, tt.want)
		}
	}
}

func TestReportLoad(t *testing.T) {
	tests := []struct {
		name  string
		rates []float64 // given to SetKnownLoadRate in turn
		req   *loadreportingpb.LoadReportRequest
		want  float64
	}{
		{name: "no known rate", req: &loadreportingpb.LoadReportRequest{}, want: -1},
		{name: "known rate", rates: []float64{0.25}, req: &loadreportingpb.LoadReportRequest{}, want: 0.25},
		{name: "known rate 0", rates: []float64{0}, req: &loadreportingpb.LoadReportRequest{}, want: 0},
		{name: "cleared", rates: []float64{0.25, -0.5}, req: &loadreportingpb.LoadReportRequest{}, want: -1},
		{name: "NaN clears", rates: []float64{0.25, math.NaN()}, req: &loadreportingpb.LoadReportRequest{}, want: -1},
		{
			name:  "any service of the process",
			rates: []float64{0.75},
			req:   &loadreportingpb.LoadReportRequest{Scope: "other", ServiceName: "some.Other"},
			want:  0.75,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			r := newTestReporter(t, Options{Capacity: 10})
			cc, _ := serve(t, r)
			for _, rate := range tt.rates {
				r.SetKnownLoadRate(rate)
			}

			got := reportLoad(ctx, t, cc, tt.req)
			want := &loadreportingpb.LoadReportResponse{
				TimestampTicks: 638396640001234567, // testTime
				KnownLoadRate:  tt.want,
				ServerStats: &loadreportingpb.ServerStats{
					RequestCapacity:          10,
					ServerUtilization:        testCPU,
					ServerMemoryUsagePercent: testMemory,
				},
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("ReportLoad (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReportLoadMeasures checks the figures a reporter on the real clock
// and machine gives.
func TestReportLoadMeasures(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	r := New(Options{Capacity: 5, Interval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	defer r.Close()
	cc, _ := serve(t, r)

	before := dotnetTicks(time.Now())
	resp := reportLoad(ctx, t, cc, &loadreportingpb.LoadReportRequest{})
	after := dotnetTicks(time.Now())
	if ticks := resp.GetTimestampTicks(); ticks < before || ticks > after {
		t.Errorf("timestamp_ticks %d, want between %d and %d", ticks, before, after)
	}
	stats := resp.GetServerStats()
	if got := stats.GetRequestCapacity(); got != 5 {
		t.Errorf("request_capacity %d, want 5", got)
	}
	if got := resp.GetKnownLoadRate(); got != -1 {
		t.Errorf("known_load_rate %v, want -1", got)
	}
	if got := stats.GetServerUtilization(); got < 0 || got > 1 {
		t.Errorf("server_utilization %v, want 0 to 1", got)
	}
	if got := stats.GetServerMemoryUsagePercent(); got < 0 || got > 100 {
		t.Errorf("server_memory_usage_percent %v, want 0 to 100", got)
	}
}

func TestDotnetTicks(t *testing.T) {
	tests := []struct {
		name string
		time time.Time
		want int64
	}{
		{name: "year 1", time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), want: 0},
		{name: "unix epoch", time: time.Unix(0, 0), want: 621355968000000000},
		{name: "2024 with sub-tick nanoseconds", time: time.Date(2024, 1, 1, 0, 0, 0, 123456789, time.UTC), want: 638396640001234567},
		{name: "time zones do not matter", time: time.Date(2024, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)), want: 638396640000000000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dotnetTicks(tt.time); got != tt.want {
				t.Errorf("dotnetTicks(%v) = %d, want %d", tt.time, got, tt.want)
			}
		})
	}
}

// wireField is one field of an encoded message, with the value decoded
// by wire type: uint64 for varints, float64 for fixed64 (every fixed64 in
// these messages is a double), []wireField for a nested message.
type wireField struct {
	Num   protowire.Number
	Type  protowire.Type
	Value any
}

func decodeWire(t *testing.T, b []byte) []wireField {
	t.Helper()
	var fields []wireField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("reading a tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := wireField{Num: num, Type: typ}
		switch typ {
		case protowire.VarintType:
			f.Value, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			f.Value = math.Float64frombits(v)
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				f.Value = decodeWire(t, v)
			}
		default:
			t.Fatalf("field %d has unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("reading field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		fields = append(fields, f)
	}
	return fields
}

// TestWireFormat checks what the .NET quaestor and its workers expect on
// the wire: the method name and the field numbers and types of
// Quaestor.LoadReporting.
func TestWireFormat(t *testing.T) {
	if got, want := loadreportingpb.LoadReportingGrpc_ReportLoad_FullMethodName, "/Quaestor.LoadReporting.LoadReportingGrpc/ReportLoad"; got != want {
		t.Errorf("method %q, want %q", got, want)
	}
	resp := loadReportResponse(Snapshot{
		InFlight:      7,
		Capacity:      20,
		KnownLoadRate: -1,
		CPU:           0.5,
		Memory:        61.25,
		Time:          time.Unix(0, 0),
	})
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatalf("marshalling: %v", err)
	}
	want := []wireField{
		{Num: 1, Type: protowire.VarintType, Value: uint64(621355968000000000)}, // timestamp_ticks
		{Num: 2, Type: protowire.Fixed64Type, Value: -1.0},                      // known_load_rate
		{Num: 3, Type: protowire.BytesType, Value: []wireField{ // server_stats
			{Num: 1, Type: protowire.VarintType, Value: uint64(20)}, // request_capacity
			{Num: 2, Type: protowire.VarintType, Value: uint64(7)},  // current_requests
			{Num: 3, Type: protowire.Fixed64Type, Value: 0.5},       // server_utilization
			{Num: 4, Type: protowire.Fixed64Type, Value: 61.25},     // server_memory_usage_percent
		}},
	}
	if diff := cmp.Diff(want, decodeWire(t, b)); diff != "" {
		t.Errorf("LoadReportResponse on the wire (-want +got):\n%s", diff)
	}
}

// orcaTrailerKey is where grpc-go's orca puts the per-call report.
const orcaTrailerKey = "endpoint-load-metrics-bin"

// orcaTrailer decodes the ORCA report in trailer, as grpc-go's orca does
// for balancers.
func orcaTrailer(t *testing.T, trailer metadata.MD) *v3orcapb.OrcaLoadReport {
	t.Helper()
	values := trailer.Get(orcaTrailerKey)
	if len(values) != 1 {
		t.Fatalf("trailer %v has %d %s, want 1", trailer, len(values), orcaTrailerKey)
	}
	report := new(v3orcapb.OrcaLoadReport)
	if err := proto.Unmarshal([]byte(values[0]), report); err != nil {
		t.Fatalf("decoding %s: %v", orcaTrailerKey, err)
	}
	return report
}

func TestORCAPerCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	r := newTestReporter(t, Options{Capacity: 4})
	r.SetKnownLoadRate(0.6)
	cc, _ := serve(t, r)

	// One call held in flight, which the reports of the others count.
	heldCtx, release := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- callUnary(heldCtx, cc, true) }()
	testwait.For(ctx, t, "a call in flight", func() bool { return r.InFlight() == 1 })

	want := &v3orcapb.OrcaLoadReport{
		CpuUtilization:         testCPU,
		MemUtilization:         testMemory / 100,
		ApplicationUtilization: 0.6,
		Utilization:            map[string]float64{RequestsUtilization: 0.25},
		RequestCost:            map[string]float64{},
		NamedMetrics:           map[string]float64{CurrentRequestsMetric: 1, RequestCapacityMetric: 4},
	}
	calls := []struct {
		name string
		call func() (metadata.MD, error)
	}{
		{name: "unary", call: func() (metadata.MD, error) {
			var trailer metadata.MD
			err := callUnary(ctx, cc, false, grpc.Trailer(&trailer))
			return trailer, err
		}},
		{name: "stream", call: func() (metadata.MD, error) { return callStream(ctx, cc, false) }},
		{name: "ReportLoad", call: func() (metadata.MD, error) {
			var trailer metadata.MD
			reportLoad(ctx, t, cc, &loadreportingpb.LoadReportRequest{}, grpc.Trailer(&trailer))
			return trailer, nil
		}},
	}
	for _, c := range calls {
		trailer, err := c.call()
		if err != nil {
			t.Fatalf("%s call: %v", c.name, err)
		}
		got := orcaTrailer(t, trailer)
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s call: ORCA trailer (-want +got):\n%s", c.name, diff)
		}
	}

	release()
	if err := <-held; status.Code(err) != codes.Canceled {
		t.Errorf("held call: %v, want Canceled", err)
	}
}

func TestORCAOutOfBand(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	r := newTestReporter(t, Options{})
	cc, _ := serve(t, r)

	stream, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{
		ReportInterval: durationpb.New(time.Millisecond), // raised to minReportingInterval
	})
	if err != nil {
		t.Fatalf("StreamCoreMetrics: %v", err)
	}
	got, err := stream.Recv()
	if err != nil {
		t.Fatalf("receiving the first report: %v", err)
	}
	// The capacity is unknown: no capacity metric and no utilization.
	want := &v3orcapb.OrcaLoadReport{
		CpuUtilization: testCPU,
		MemUtilization: testMemory / 100,
		NamedMetrics:   map[string]float64{CurrentRequestsMetric: 0},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("first report (-want +got):\n%s", diff)
	}

	// Later reports follow the known load rate.
	r.SetKnownLoadRate(0.9)
	for got.GetApplicationUtilization() != 0.9 {
		if got, err = stream.Recv(); err != nil {
			t.Fatalf("receiving reports until the known load rate shows: %v", err)
		}
	}

	// Close ends the stream, so that it does not hold up a graceful stop.
	r.Close()
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("stream after Close: %v, want Unavailable", err)
	}
}

func TestRegisterTwice(t *testing.T) {
	r := newTestReporter(t, Options{})
	gs := grpc.NewServer()
	defer gs.Stop()
	if err := r.Register(gs); err != nil {
		t.Fatalf("first Register: %v", err)
	}
	err := r.Register(gs)
	if err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second Register: %v, want an already registered error", err)
	}
}
