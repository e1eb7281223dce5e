package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quaestor-go/quaestor/internal/loopbackport"
	"github.com/quaestor-go/quaestor/internal/syncbuf"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// binDir holds quaestor and quaestor-worker, built once for the tests that
// run them as processes.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quaestor-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/quaestor-go/quaestor/cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		defer func() {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	os.Exit(code)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// freeAddr returns a loopback address that was free a moment ago and that
// no other test in this process was given.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopbackport.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// process is a child started by a test and killed at its end.
type process struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan error
}

func start(t *testing.T, name string, args ...string) (*process, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: new(syncbuf.Buffer), done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p, bufio.NewReader(stdout)
}

// wait waits for the process to exit and returns how it ended, or
// ctx's error when ctx ends first. It may be called more than once.
func (p *process) wait(ctx context.Context) error {
	select {
	case err := <-p.done:
		p.done <- err // for the next wait and the cleanup's
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startWorker(t *testing.T) string {
	t.Helper()
	_, out := start(t, "quaestor-worker", "--port", "0")
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("worker printed no address: %v", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(line), "quaestor-worker listening on ")
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "quaestor.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := execute(t.Context(), []string{"version"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "quaestor ") {
		t.Errorf("version printed %q", stdout.String())
	}
}

func TestConfigErrorsExitNonZero(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "missing file", args: []string{"proxy", "-c", "/nonexistent/q.yaml"}, wantErr: "config: reading /nonexistent/q.yaml"},
		{name: "bad value", args: []string{"proxy", "-c", writeConfig(t, "proxy:\n  max_message_size: 0\n")},
			wantErr: "proxy.max_message_size: 0 is out of range"},
		{name: "bad set", args: []string{"proxy", "-c", writeConfig(t, ""), "--set", "proxy.policy=fastest"},
			wantErr: `proxy.policy: unknown policy "fastest"`},
		{name: "bad flag", args: []string{"proxy", "--nope"}, wantErr: "unknown flag: --nope"},
		{name: "bad listen flag", args: []string{"proxy", "-c", writeConfig(t, ""), "--listen", "nowhere"},
			wantErr: `--listen: proxy.listen: "nowhere" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execute(t.Context(), tt.args, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tt.wantErr)
			}
		})
	}
}

func TestListenAddressTaken(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var stdout, stderr bytes.Buffer
	code := execute(t.Context(), []string{"proxy", "-c", writeConfig(t, "etcd: {mode: none}\nadmin: {listen: ''}\n"), "--listen", lis.Addr().String()}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "proxy.listen "+lis.Addr().String()) ||
		!strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestProxyProcess runs quaestor proxy and a worker as processes, calls
// through the proxy, and stops the proxy with SIGTERM while a stream is in
// flight: the stream finishes and the process exits 0.
func TestProxyProcess(t *testing.T) {
	worker := startWorker(t)
	listen := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy:
  listen: %s
  drain_timeout: 20s
etcd:
  mode: none
admin:
  listen: ""
services:
  - name: quaestor.example.v1.Echo
    endpoints: [%s]
`, listen, worker))
	proxyProc, _ := start(t, "quaestor", "proxy", "-c", cfg)

	ctx := testContext(t)
	cc := dialServingProxy(ctx, t, listen)
	echo := examplev1.NewEchoClient(cc)
	resp, err := echo.Unary(ctx, &examplev1.EchoRequest{Payload: []byte("hi")})
	if err != nil || string(resp.GetPayload()) != "hi" || resp.GetServer() != worker {
		t.Fatalf("call through the proxy: %v, %v", resp, err)
	}

	stream, err := echo.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&examplev1.EchoRequest{Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := proxyProc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait for the drain to start: health turns NOT_SERVING.
	health := healthpb.NewHealthClient(cc)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("health never turned NOT_SERVING after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stream.Send(&examplev1.EchoRequest{Payload: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || string(resp.GetPayload()) != "2" {
		t.Fatalf("in-flight stream during the drain: %v, %v", resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of the stream: %v", err)
	}
	if err := proxyProc.wait(ctx); err != nil {
		t.Fatalf("quaestor proxy after the drain: %v\n%s", err, proxyProc.stderr)
	}
	if !strings.Contains(proxyProc.stderr.String(), "proxy: drained") {
		t.Errorf("no drain in the log:\n%s", proxyProc.stderr)
	}
}

// dialServingProxy connects to the proxy at addr and waits until its
// health says SERVING; the connection closes with the test.
func dialServingProxy(ctx context.Context, t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	health := healthpb.NewHealthClient(cc)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return cc
		}
		if ctx.Err() != nil {
			t.Fatalf("proxy never served: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling with the deadline above
	}
}
