package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/quaestor-go/quaestor/routing/registry"
)

// startAuthEtcd starts an embedded etcd member with authentication on: the
// user root with password.
func startAuthEtcd(t *testing.T, password string) string {
	t.Helper()
	member, err := registry.StartEmbedded(registry.EmbeddedOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://" + freeAddr(t),
		PeerURL:   "http://" + freeAddr(t),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{member.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := testContext(t)
	if _, err := client.UserAdd(ctx, "root", password); err != nil {
		t.Fatal(err)
	}
	if _, err := client.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return member.ClientURL()
}

// TestSecretsNeverLogged runs `quaestor run` against an etcd that requires
// a password, with a supervised worker whose environment holds a token, at
// debug level: neither secret may appear in the logs, the status API or
// the metrics. A wrong password fails with an error that says so without
// printing it either.
func TestSecretsNeverLogged(t *testing.T) {
	const (
		password    = "etcd-password-7f3a9c"
		wrong       = "wrong-password-51d2e8"
		workerToken = "worker-token-c0ffee42"
	)
	etcdURL := startAuthEtcd(t, password)
	listen, adminAddr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	configWith := func(password string) string {
		return writeConfig(t, fmt.Sprintf(`
log: {level: debug}
proxy: {listen: %s}
admin: {listen: %s}
etcd: {mode: external, endpoints: [%q], username: root, password: %q}
registry: {lease_ttl: 2s}
supervisor:
  log_dir: %s
  heartbeat: {interval: 200ms, startup_grace: 5s}
  agents:
    - name: echo
      executable: %s
      args: ["--port", "{Port}"]
      env: {API_TOKEN: %q}
      service_names: [quaestor.example.v1.Echo]
`, listen, adminAddr, etcdURL, password, filepath.Join(dir, "logs"), filepath.Join(binDir, "quaestor-worker"), workerToken))
	}

	run, stdout := start(t, "quaestor", "run", "-c", configWith(password))
	ctx := testContext(t)
	for {
		snap, _, err := fetchStatus(ctx, adminAddr)
		if err == nil && len(snap.Processes) == 1 && snap.Processes[0].Registered {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the worker was never registered through the authenticated etcd: %v\n%s", err, run.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var pages []string
	for _, path := range []string{"/api/status", "/metrics", "/readyz", "/"} {
		_, body := httpGet(t, "http://"+adminAddr+path)
		pages = append(pages, body)
	}
	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := run.wait(ctx); err != nil {
		t.Fatalf("quaestor run after SIGTERM: %v\n%s", err, run.stderr)
	}
	rest, _ := io.ReadAll(stdout)
	logs := run.stderr.String() + string(rest)

	// The wrong password: quaestor refuses to start, and says that etcd
	// refused it (authentication failed; on a slow machine the refusal can
	// surface as the connection's timeout instead).
	bad, badStdout := start(t, "quaestor", "run", "-c", configWith(wrong))
	if err := bad.wait(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("quaestor run with a wrong etcd password: %v, want a failed start\n%s", err, bad.stderr)
	}
	if why := bad.stderr.String(); !strings.Contains(why, "authentication failed") && !strings.Contains(why, "connecting to etcd") {
		t.Errorf("a wrong etcd password was not reported:\n%s", why)
	}
	badRest, _ := io.ReadAll(badStdout)
	logs += bad.stderr.String() + string(badRest)

	for _, secret := range []string{password, wrong, workerToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain the secret %q:\n%s", secret, logs)
		}
		for _, page := range pages {
			if strings.Contains(page, secret) {
				t.Errorf("the admin server shows the secret %q", secret)
			}
		}
	}
}
