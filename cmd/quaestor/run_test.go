package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRunProcess runs `quaestor run` with its embedded etcd, registers a
// worker with `quaestor register`, calls it through the proxy, and stops
// everything with SIGTERM.
func TestRunProcess(t *testing.T) {
	etcdClient := freeAddr(t)
	listen, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy:
  listen: %s
admin:
  listen: %s
etcd:
  mode: embedded
  dir: %s
  client_url: http://%s
  peer_url: http://%s
registry:
  lease_ttl: 2s
`, listen, adminAddr, filepath.Join(t.TempDir(), "etcd"), etcdClient, freeAddr(t)))
	run, _ := start(t, "quaestor", "run", "-c", cfg)
	ctx := testContext(t)
	for {
		code, body := httpGet(t, "http://"+adminAddr+"/readyz")
		if code == http.StatusOK {
			if !strings.Contains(body, "[+] etcd discovery ok") {
				t.Fatalf("readyz: %s", body)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("quaestor run never became ready: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	worker := startWorker(t)
	register, _ := start(t, "quaestor", "register", "-c", cfg, "--service", "quaestor.example.v1.Echo", "--addr", worker, "--meta", "zone=a")
	cc, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	echo := examplev1.NewEchoClient(cc)
	for {
		resp, err := echo.Unary(ctx, &examplev1.EchoRequest{})
		if err == nil {
			if resp.GetServer() != worker {
				t.Fatalf("answered by %q, want %q", resp.GetServer(), worker)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the registered worker was never reached: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, body := httpGet(t, "http://"+adminAddr+"/metrics")
	for _, series := range []string{
		"quaestor_etcd_discovery_ready 1",
		`quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"}`,
		`quaestor_proxy_request_duration_seconds_bucket{method="Unary",service="quaestor.example.v1.Echo"`,
		`quaestor_endpoint_healthy{addr="` + worker + `",service="quaestor.example.v1.Echo"} 1`,
		`quaestor_endpoint_picks_total{addr="` + worker + `",service="quaestor.example.v1.Echo"}`,
		"quaestor_registered_instances",
	} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics after traffic lacks %s", series)
		}
	}

	// Look-aside: the proxy names the worker, and every proxy (this one)
	// is registered as a discovery service.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"discover", "-c", cfg, "--top", "quaestor.example.v1.Echo"}, worker},
		{[]string{"discover", "-c", cfg, "--best", "quaestor.example.v1.Echo"}, worker},
		{[]string{"discover", "-c", cfg, "Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc"}, listen},
	} {
		for {
			var stdout, stderr strings.Builder
			code := execute(ctx, tt.args, &stdout, &stderr)
			if code == exitOK && strings.TrimSpace(stdout.String()) == tt.want {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q; want %s", tt.args, code, stdout.String(), stderr.String(), tt.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// quaestor status shows the registered worker, healthy.
	for {
		var stdout, stderr strings.Builder
		code := execute(ctx, []string{"status", "-c", cfg}, &stdout, &stderr)
		out := stdout.String()
		if code == exitOK && strings.Contains(out, "etcd: embedded, ready") && strings.Contains(out, worker) &&
			strings.Contains(out, "healthy") && strings.Contains(out, "quaestor.example.v1.Echo") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("quaestor status: exit %d\n%s%s", code, out, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	var stdout, stderr strings.Builder
	if code := execute(ctx, []string{"discover", "-c", cfg, "--best", "nosuch.Svc"}, &stdout, &stderr); code != exitFailure ||
		!strings.Contains(stderr.String(), `unknown service "nosuch.Svc"`) {
		t.Errorf("discover of an unknown service: exit %d, stderr %q", code, stderr.String())
	}

	// Stopping register revokes its lease: the service is gone at once,
	// long before a TTL could pass.
	if err := register.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := register.wait(ctx); err != nil {
		t.Fatalf("register exited with %v", err)
	}
	for {
		_, err := echo.Unary(ctx, &examplev1.EchoRequest{})
		if st := status.Convert(err); st.Code() == codes.Unimplemented || st.Code() == codes.Unavailable {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("calls still succeed after deregistration: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := run.wait(ctx); err != nil {
		t.Fatalf("quaestor run after SIGTERM: %v", err)
	}
	// A clean stop warns of nothing: the monitor, which watches the
	// proxy's own look-aside endpoint too, stops before that endpoint
	// turns NOT_SERVING.
	logs := run.stderr.String()
	if i := strings.Index(logs, "proxy: draining"); i < 0 {
		t.Errorf("no drain logged:\n%s", logs)
	} else if stopping := logs[i:]; strings.Contains(stopping, "level=WARN") || strings.Contains(stopping, "level=ERROR") {
		t.Errorf("warnings while stopping:\n%s", stopping)
	}
	// Its ports are released.
	for _, addr := range []string{listen, adminAddr, etcdClient} {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still taken after exit: %v", addr, err)
			continue
		}
		lis.Close()
	}
}

func TestRunEtcdPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := writeConfig(t, fmt.Sprintf(`
proxy: {listen: %s}
admin: {listen: ""}
etcd: {mode: embedded, dir: %s, client_url: "http://%s", peer_url: "http://%s"}
`, freeAddr(t), filepath.Join(t.TempDir(), "etcd"), taken.Addr(), freeAddr(t)))
	var stdout, stderr strings.Builder
	code := execute(t.Context(), []string{"run", "-c", cfg}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "starting the embedded etcd") ||
		!strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
