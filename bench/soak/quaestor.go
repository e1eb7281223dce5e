//go:build linux

package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/quaestor-go/quaestor/internal/loopbackport"
)

// quaestorProc is the quaestor process under soak: `quaestor run` with an
// embedded etcd, the proxy and the admin server, and no supervised workers.
type quaestorProc struct {
	*child
	proxyAddr string
	adminAddr string
	etcdURL   string
}

// buildQuaestor builds ./cmd/quaestor of the module and returns the
// binary's path. The binary goes to the user's cache directory, one per
// module checkout: go build leaves an up-to-date binary alone, which saves
// the link (seconds on a busy machine) on every run but the first after a
// change.
func buildQuaestor(ctx context.Context) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	h.Write([]byte(root))
	bin := filepath.Join(cache, "quaestor-soak", fmt.Sprintf("%x", h.Sum64()), "quaestor")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/quaestor")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/quaestor: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the quaestor module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// startQuaestor writes a configuration into workDir, starts bin on it with
// its log in logPath, and waits until /readyz answers 200.
func startQuaestor(ctx context.Context, bin, workDir, logPath string) (*quaestorProc, error) {
	var addrs [4]string
	for i := range addrs {
		addr, err := loopbackport.FreeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = addr
	}
	q := &quaestorProc{proxyAddr: addrs[0], adminAddr: addrs[1], etcdURL: "http://" + addrs[2]}
	config := fmt.Sprintf(`# Written by the soak run (bench/soak).
proxy:
  listen: %s
  drain_timeout: 5s
admin:
  listen: %s
  pprof: true
etcd:
  mode: embedded
  dir: %s
  client_url: %s
  peer_url: http://%s
registry:
  lease_ttl: 5s
health:
  interval: 1s
  timeout: 1s
# Echo's Unary is idempotent: a call on a backend killed under it is
# retried on another, as a deployment would configure it.
retry:
  idempotent_methods: [quaestor.example.v1.Echo/Unary]
log:
  level: warn
`, q.proxyAddr, q.adminAddr, filepath.Join(workDir, "etcd"), q.etcdURL, addrs[3])
	cfgPath := filepath.Join(workDir, "quaestor.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	c, _, err := startChild("quaestor", exec.Command(bin, "run", "-c", cfgPath), logPath, "", 0)
	if err != nil {
		return nil, err
	}
	q.child = c
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		code, body, err := httpGet(ctx, "http://"+q.adminAddr+"/readyz")
		if err == nil && code == http.StatusOK {
			return q, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("quaestor exited before it was ready: %v (see %s)", c.exitError(), logPath)
		case <-ctx.Done():
			c.kill()
			return nil, fmt.Errorf("quaestor not ready within 60s: %d %s %v (see %s)", code, body, err, logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// adminClient opens a connection per request: kept-alive connections
// would hold goroutines in the proxy's admin server, which the soak
// measures.
var adminClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet returns the status and body of a GET, bounded by ctx and 5 s.
func httpGet(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
