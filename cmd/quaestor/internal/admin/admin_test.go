package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestEndpoints(t *testing.T) {
	var etcdUp atomic.Bool
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "quaestor_test_total", Help: "a test counter"}))
	srv, err := New(Options{
		Listen: "127.0.0.1:0",
		Checks: []Check{
			{Name: "proxy", Ready: func() error { return nil }},
			{Name: "etcd discovery", Ready: func() error {
				if etcdUp.Load() {
					return nil
				}
				return errors.New("etcd unreachable")
			}},
		},
		Gatherer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + srv.Addr()

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-] etcd discovery: etcd unreachable") || !strings.Contains(body, "[+] proxy ok") {
		t.Errorf("/readyz while etcd is down = %d %q", code, body)
	}
	etcdUp.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || !strings.HasSuffix(body, "ready\n") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "quaestor_test_total 0") {
		t.Errorf("/metrics = %d %q", code, body)
	}
}

func TestListenTaken(t *testing.T) {
	srv, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.lis.Close()
	_, err = New(Options{Listen: srv.Addr()})
	if err == nil || !strings.Contains(err.Error(), "admin.listen "+srv.Addr()) {
		t.Errorf("second listener: %v", err)
	}
}

func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv, err := New(Options{Listen: "127.0.0.1:0", Pprof: on})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		base := "http://" + srv.Addr()
		code, body := get(t, base+"/debug/pprof/mutex?debug=1")
		switch {
		case !on && code != http.StatusNotFound:
			t.Errorf("admin.pprof false: /debug/pprof/mutex = %d", code)
		case on && (code != http.StatusOK || !strings.Contains(body, "sampling period=100\n")):
			// Without a sampling rate the mutex profile stays empty.
			t.Errorf("admin.pprof true: /debug/pprof/mutex = %d %q", code, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}
}
