package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/quaestor-go/quaestor/internal/loopbackport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing/registry"
)

var echoService = examplev1.Echo_ServiceDesc.ServiceName

// testContext bounds a test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// freePort returns a loopback port that was free a moment ago and that no
// other test in this process was given.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := loopbackport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// testConfig is a configuration with fast heartbeats and restarts.
func testConfig(t *testing.T, agents ...AgentConfig) Config {
	cfg := DefaultConfig()
	cfg.LogDir = t.TempDir()
	cfg.Heartbeat = HeartbeatConfig{Interval: 100 * time.Millisecond, Timeout: time.Second, StartupGrace: 5 * time.Second, Failures: 2}
	cfg.Restart = RestartConfig{
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		CrashLoopStarts: 5, CrashLoopWindow: time.Minute, FatalRetry: time.Minute, StableAfter: 10 * time.Second,
	}
	cfg.StopTimeout = 5 * time.Second
	cfg.Agents = agents
	return cfg
}

// workerAgent runs quaestor-worker instances with extra flags.
func workerAgent(name string, instances int, flags ...string) AgentConfig {
	return AgentConfig{
		Name:         name,
		Executable:   workerBin,
		Args:         append([]string{"--host", "127.0.0.1", "--port", "{Port}", "--name", name + "-{Instance}"}, flags...),
		Instances:    instances,
		ServiceNames: []string{echoService},
	}
}

// roleAgent runs this test binary in a role (see runRole).
func roleAgent(name, role string, env map[string]string) AgentConfig {
	agent := AgentConfig{Name: name, Executable: testBin, Env: map[string]string{roleEnv: role}}
	for k, v := range env {
		agent.Env[k] = v
	}
	return agent
}

// startSupervisor starts a supervisor that the test's end stops.
func startSupervisor(ctx context.Context, t *testing.T, opts Options) *Supervisor {
	t.Helper()
	if opts.Logger == nil {
		logs := newLogRecorder()
		logs.dumpOnFailure(t)
		opts.Logger = logs.logger()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// instanceStatus returns the status of agent's instance i.
func instanceStatus(t *testing.T, s *Supervisor, agent string, i int) InstanceStatus {
	t.Helper()
	for _, st := range s.Status() {
		if st.Agent == agent && st.Instance == i {
			return st
		}
	}
	t.Fatalf("no instance %s-%d in %v", agent, i, s.Status())
	return InstanceStatus{}
}

// testRegistry is a real etcd with a registrar on it.
type testRegistry struct {
	client    *clientv3.Client
	registrar *registry.Registrar
	prefix    string
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	server, err := registry.StartEmbedded(registry.EmbeddedOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: url,
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)
	cfg := registry.DefaultEtcdConfig()
	cfg.Mode = registry.ModeExternal
	cfg.Endpoints = []string{url}
	client, err := registry.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	const prefix = "/supervisor-test"
	registrar, err := registry.NewRegistrar(registry.RegistrarOptions{Client: client, Prefix: prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = registrar.Close() })
	return &testRegistry{client: client, registrar: registrar, prefix: prefix}
}

// key returns the etcd key of an instance of service.
func (r *testRegistry) key(service, id string) string {
	return registry.InstanceKey(r.prefix, registry.DefaultScope, service, id)
}

// revision returns the revision at which key was last written, 0 if it is
// absent.
func (r *testRegistry) revision(ctx context.Context, t *testing.T, key string) int64 {
	t.Helper()
	resp, err := r.client.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

// keys returns every key under the registry's prefix.
func (r *testRegistry) keys(ctx context.Context, t *testing.T) []string {
	t.Helper()
	resp, err := r.client.Get(ctx, r.prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// awaitEvents waits for the events on key after revision to include want
// ("PUT", "DELETE") in that order, others possibly between them (the
// registrar may write a key twice).
func (r *testRegistry) awaitEvents(ctx context.Context, t *testing.T, key string, after int64, want ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []string
	rest := want
	for resp := range r.client.Watch(ctx, key, clientv3.WithRev(after+1)) {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			got = append(got, ev.Type.String())
			if ev.Type.String() == rest[0] {
				if rest = rest[1:]; len(rest) == 0 {
					return
				}
			}
		}
	}
	t.Fatalf("events on %s: %v, want %v in that order (%v)", key, got, want, ctx.Err())
}

// logRecorder is a slog.Handler that keeps every record, for tests to
// look at what was logged and in which order.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]logRecord
	attrs   []slog.Attr
}

type logRecord struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: &sync.Mutex{}, records: &[]logRecord{}}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{time: r.Time, level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, rec)
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorder{mu: h.mu, records: h.records, attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

func (h *logRecorder) logger() *slog.Logger { return slog.New(h) }

// find returns the records whose message contains msg and that have the
// attributes of match, in order.
func (h *logRecorder) find(msg string, match map[string]string) []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logRecord
	for _, rec := range *h.records {
		if rec.matches(msg, match) {
			out = append(out, rec)
		}
	}
	return out
}

// index returns the position of the first record with msg and match, -1
// if there is none.
func (h *logRecorder) index(msg string, match map[string]string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.IndexFunc(*h.records, func(rec logRecord) bool { return rec.matches(msg, match) })
}

func (rec logRecord) matches(msg string, match map[string]string) bool {
	if !strings.Contains(rec.msg, msg) {
		return false
	}
	for k, v := range match {
		if rec.attrs[k] != v {
			return false
		}
	}
	return true
}

// dumpOnFailure logs every record if the test fails, or always when
// QUAESTOR_SUPERVISOR_TEST_LOGS is set.
func (h *logRecorder) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("QUAESTOR_SUPERVISOR_TEST_LOGS") == "" {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, rec := range *h.records {
			t.Logf("%s %s %s %v", rec.time.Format("15:04:05.000"), rec.level, rec.msg, rec.attrs)
		}
	})
}
