package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quaestor-go/quaestor/internal/testcert"
)

// TestDiscoverOverTLS asks a proxy serving TLS with quaestor discover.
func TestDiscoverOverTLS(t *testing.T) {
	worker := startWorker(t)
	listen := freeAddr(t)
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "proxy", 2)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy: {listen: %s, tls: {cert: %s, key: %s}}
etcd: {mode: none}
admin: {listen: ""}
services: [{name: quaestor.example.v1.Echo, endpoints: [%s]}]
`, listen, cert, key, worker))
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan int, 1)
	go func() {
		var stdout, stderr strings.Builder
		done <- execute(ctx, []string{"proxy", "-c", cfg}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("quaestor proxy exited with %d", code)
		}
	}()
	discoverArgs := []string{"discover", "-c", cfg, "--top", "--tls-ca", ca.File, "quaestor.example.v1.Echo"}
	for {
		var stdout, stderr strings.Builder
		if execute(ctx, discoverArgs, &stdout, &stderr) == exitOK && strings.TrimSpace(stdout.String()) == worker {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("discover over TLS never answered: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var stdout, stderr strings.Builder
	if code := execute(ctx, []string{"discover", "-c", cfg, "quaestor.example.v1.Echo"}, &stdout, &stderr); code == exitOK {
		t.Errorf("plaintext discover of a TLS proxy succeeded: %s", stdout.String())
	}
}
