package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTimeout = 10 * time.Second

// lineWriter hands each Write to the test as one line; run prints its
// listening line with a single Write.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w <- string(p):
	default: // nobody reads a second line
	}
	return len(p), nil
}

// startWorker runs the worker in-process with args, waits for its listening
// line and returns a connection to it. The worker stops when the test ends;
// stop stops it sooner and returns run's error.
func startWorker(ctx context.Context, t *testing.T, args ...string) (addr string, cc *grpc.ClientConn, stop func() error) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	stdout := make(lineWriter, 1)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, args, stdout, t.Output()) }()

	var runErr error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})

	select {
	case line := <-stdout:
		var ok bool
		addr, ok = strings.CutPrefix(strings.TrimSuffix(line, "\n"), listeningLine)
		if !ok {
			t.Fatalf("first stdout line %q, want %q followed by the address", line, listeningLine)
		}
	case err := <-done:
		stopped, runErr = true, err
		t.Fatalf("run returned before listening: %v", err)
	case <-ctx.Done():
		t.Fatalf("waiting for the listening line: %v", ctx.Err())
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { cc.Close() })
	return addr, cc, stop
}

func TestRunServes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	addr, cc, stop := startWorker(ctx, t, "--port=0")

	resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{Payload: []byte("hi")})
	if err != nil {
		t.Fatalf("Unary: %v", err)
	}
	if diff := cmp.Diff([]any{addr, "hi"}, []any{resp.GetServer(), string(resp.GetPayload())}); diff != "" {
		t.Errorf("Unary [server payload] (-want +got):\n%s", diff)
	}

	health := healthpb.NewHealthClient(cc)
	for _, service := range []string{"", "quaestor.example.v1.Echo"} {
		got, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health of %q: %v", service, err)
		}
		if got.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v, want SERVING", service, got.GetStatus())
		}
	}

	wantServices := []string{
		"Quaestor.LoadReporting.LoadReportingGrpc",
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"quaestor.example.v1.Echo",
		"xds.service.orca.v3.OpenRcaService",
	}
	if diff := cmp.Diff(wantServices, listServices(ctx, t, cc)); diff != "" {
		t.Errorf("reflected services (-want +got):\n%s", diff)
	}

	if err := stop(); err != nil {
		t.Errorf("run after cancel: %v, want nil", err)
	}
}

// TestRunReportsLoad asks a worker for its load, as quaestor's routing
// does, over the quaestor RPC and over ORCA.
func TestRunReportsLoad(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		wantCapacity int32
		wantRate     float64
	}{
		{name: "defaults", args: []string{"--port=0"}, wantCapacity: 100, wantRate: -1},
		{name: "flags", args: []string{"--port=0", "--capacity=7", "--load-rate=0.3"}, wantCapacity: 7, wantRate: 0.3},
		{name: "negative rate is none", args: []string{"--port=0", "--capacity", "0", "--load-rate", "-0.5"}, wantCapacity: 0, wantRate: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			_, cc, _ := startWorker(ctx, t, tt.args...)

			// Calls to Echo are load while they run: hold one with a
			// delay, and see it counted.
			callCtx, endCall := context.WithCancel(ctx)
			defer endCall()
			called := make(chan error, 1)
			go func() {
				_, err := examplev1.NewEchoClient(cc).Unary(callCtx, &examplev1.EchoRequest{Delay: durationpb.New(time.Hour)})
				called <- err
			}()
			report := func() *loadreportingpb.LoadReportResponse {
				resp, err := loadreportingpb.NewLoadReportingGrpcClient(cc).ReportLoad(ctx, &loadreportingpb.LoadReportRequest{ServiceName: "quaestor.example.v1.Echo"})
				if err != nil {
					t.Fatalf("ReportLoad: %v", err)
				}
				return resp
			}
			resp := report()
			ticker := time.NewTicker(time.Millisecond)
			defer ticker.Stop()
			for resp.GetServerStats().GetCurrentRequests() != 1 {
				select {
				case <-ctx.Done():
					t.Fatalf("waiting for current_requests 1, last report %v: %v", resp, ctx.Err())
				case <-ticker.C:
				}
				resp = report()
			}

			stats := resp.GetServerStats()
			got := []any{stats.GetRequestCapacity(), resp.GetKnownLoadRate()}
			if diff := cmp.Diff([]any{tt.wantCapacity, tt.wantRate}, got); diff != "" {
				t.Errorf("ReportLoad [request_capacity known_load_rate] (-want +got):\n%s", diff)
			}
			if u := stats.GetServerUtilization(); u < 0 || u > 1 {
				t.Errorf("server_utilization %v, want 0 to 1", u)
			}
			if m := stats.GetServerMemoryUsagePercent(); m < 0 || m > 100 {
				t.Errorf("server_memory_usage_percent %v, want 0 to 100", m)
			}

			orcaCtx, stopORCA := context.WithCancel(ctx)
			defer stopORCA()
			oob, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(orcaCtx, &v3orcaservicepb.OrcaLoadReportRequest{})
			if err != nil {
				t.Fatalf("StreamCoreMetrics: %v", err)
			}
			oobReport, err := oob.Recv()
			if err != nil {
				t.Fatalf("receiving an ORCA report: %v", err)
			}
			if got := oobReport.GetNamedMetrics()["current_requests"]; got != 1 {
				t.Errorf("ORCA current_requests %v, want 1", got)
			}
			if got, want := oobReport.GetApplicationUtilization(), max(tt.wantRate, 0); got != want {
				t.Errorf("ORCA application_utilization %v, want %v", got, want)
			}

			endCall()
			if err := <-called; status.Code(err) != codes.Canceled {
				t.Errorf("held Echo call: %v, want Canceled", err)
			}
		})
	}
}

// TestRunStopEndsORCAStreams checks that an open ORCA out-of-band stream,
// which only ends when closed, is ended by the worker's stop rather than
// holding up the graceful stop until its timeout.
func TestRunStopEndsORCAStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	_, cc, stop := startWorker(ctx, t, "--port=0")
	oob, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{})
	if err != nil {
		t.Fatalf("StreamCoreMetrics: %v", err)
	}
	if _, err := oob.Recv(); err != nil {
		t.Fatalf("receiving an ORCA report: %v", err)
	}

	if err := stop(); err != nil {
		t.Errorf("run after cancel: %v, want nil", err)
	}
	for err == nil {
		_, err = oob.Recv()
	}
	// A stream cut by the graceful stop's timeout would end otherwise.
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "reporter closed") {
		t.Errorf("ORCA stream after stop: %v, want Unavailable from the closed reporter", err)
	}
}

// listServices asks server reflection for the services it serves.
func listServices(ctx context.Context, t *testing.T, cc *grpc.ClientConn) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("starting reflection: %v", err)
	}
	req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
	if err := stream.Send(req); err != nil {
		t.Fatalf("asking reflection for services: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("listing services: %v", err)
	}
	var names []string
	for _, service := range resp.GetListServicesResponse().GetService() {
		names = append(names, service.GetName())
	}
	return names
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		req        *examplev1.EchoRequest
		wantServer string // "" means the listen address
		wantCode   codes.Code
	}{
		{
			name:       "name",
			args:       []string{"--port", "0", "--name", "worker-7"},
			req:        &examplev1.EchoRequest{},
			wantServer: "worker-7",
		},
		{
			name: "delay",
			args: []string{"--port=0", "--delay=1h"},
			req:  &examplev1.EchoRequest{},
			// The call's own deadline ends the worker's delay.
			wantCode: codes.DeadlineExceeded,
		},
		{
			name: "max message size allows smaller responses",
			args: []string{"--port=0", "--max-message-size=1024"},
			req:  &examplev1.EchoRequest{ResponseSize: 512},
		},
		{
			name:     "max message size limits responses",
			args:     []string{"--port=0", "--max-message-size=1024"},
			req:      &examplev1.EchoRequest{ResponseSize: 2048},
			wantCode: codes.ResourceExhausted,
		},
		{
			name:     "max message size limits requests",
			args:     []string{"--port=0", "--max-message-size=1024"},
			req:      &examplev1.EchoRequest{Payload: make([]byte, 2048)},
			wantCode: codes.ResourceExhausted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			addr, cc, _ := startWorker(ctx, t, tt.args...)

			callCtx, cancelCall := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancelCall()
			resp, err := examplev1.NewEchoClient(cc).Unary(callCtx, tt.req)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("Unary: %v, want code %v", err, tt.wantCode)
			}
			if err != nil {
				return
			}
			want := tt.wantServer
			if want == "" {
				want = addr
			}
			if resp.GetServer() != want {
				t.Errorf("server %q, want %q", resp.GetServer(), want)
			}
		})
	}
}

// TestRunUnhealthyAfter watches health turn NOT_SERVING and stay so.
func TestRunUnhealthyAfter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	_, cc, _ := startWorker(ctx, t, "--port=0", "--unhealthy-after=300ms")
	health := healthpb.NewHealthClient(cc)

	watchCtx, stopWatching := context.WithCancel(ctx)
	// An open watch would hold up the worker's graceful stop.
	defer stopWatching()
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: "quaestor.example.v1.Echo"})
	if err != nil {
		t.Fatalf("watching health: %v", err)
	}
	var seen []healthpb.HealthCheckResponse_ServingStatus
	for len(seen) == 0 || seen[len(seen)-1] != healthpb.HealthCheckResponse_NOT_SERVING {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("watching health after %v: %v", seen, err)
		}
		seen = append(seen, resp.GetStatus())
	}
	want := []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("watched statuses (-want +got):\n%s", diff)
	}
	stopWatching()

	got, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatalf("health of the server: %v", err)
	}
	if got.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of the server = %v, want NOT_SERVING", got.GetStatus())
	}
}

func TestRunBadCommandLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantText string // in the message on stderr
	}{
		{name: "help", args: []string{"--help"}, wantCode: 0, wantText: "--unhealthy-after"},
		{name: "unknown flag", args: []string{"--bogus"}, wantCode: 2, wantText: "--bogus"},
		{name: "bad duration", args: []string{"--delay=soon"}, wantCode: 2, wantText: "--delay"},
		{name: "bad port", args: []string{"--port=70000"}, wantCode: 2, wantText: "--port"},
		{name: "negative port", args: []string{"--port=-1"}, wantCode: 2, wantText: "--port"},
		{name: "negative delay", args: []string{"--delay=-1s"}, wantCode: 2, wantText: "--delay"},
		{name: "negative unhealthy-after", args: []string{"--unhealthy-after=-1s"}, wantCode: 2, wantText: "--unhealthy-after"},
		{name: "zero max message size", args: []string{"--max-message-size=0"}, wantCode: 2, wantText: "--max-message-size"},
		{name: "negative capacity", args: []string{"--capacity=-1"}, wantCode: 2, wantText: "--capacity"},
		{name: "bad load rate", args: []string{"--load-rate=busy"}, wantCode: 2, wantText: "--load-rate"},
		{name: "NaN load rate", args: []string{"--load-rate=NaN"}, wantCode: 2, wantText: "--load-rate"},
		{name: "argument", args: []string{"--port=0", "extra"}, wantCode: 2, wantText: `"extra"`},
		{name: "port in use", args: []string{"--port", busyPort}, wantCode: 1, wantText: "listening"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			var stdout, stderr strings.Builder

			err := run(ctx, tt.args, &stdout, &stderr)
			code := exitCode(err, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (run: %v)", code, tt.wantCode, err)
			}
			if !strings.Contains(stderr.String(), tt.wantText) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.wantText)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if tt.wantCode == 0 && !errors.Is(err, pflag.ErrHelp) {
				t.Errorf("run: %v, want pflag.ErrHelp", err)
			}
		})
	}
}
