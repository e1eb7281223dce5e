package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/loopbackport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// roleEnv makes the test binary play a process of a test (a registrant, an
// etcd member) instead of running the tests.
const roleEnv = "QUAESTOR_REGISTRY_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	goleak.VerifyTestMain(m)
}

func runRole(role string) int {
	var err error
	switch role {
	case "registrant":
		err = runRegistrant()
	case "member":
		err = runMember()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	return 0
}

var quietLogger = slog.New(slog.DiscardHandler)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// freePort returns a loopback port that was free a moment ago and that no
// other test in this process was given.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := loopbackport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

type testEtcd struct {
	server *Embedded
	client *clientv3.Client
	url    string
}

// startEtcd runs a real single-node etcd in this process.
func startEtcd(t testing.TB) *testEtcd {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	server, err := StartEmbedded(EmbeddedOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: url,
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)
	return &testEtcd{server: server, client: newClient(t, url), url: url}
}

func newClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cfg := DefaultEtcdConfig()
	cfg.Mode = ModeExternal
	cfg.Endpoints = endpoints
	client, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// startEcho serves Echo on loopback and returns its address.
func startEcho(t testing.TB, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: name}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// cutter is a TCP forwarder on loopback whose connections a test can cut,
// to play a network partition between a client and etcd.
type cutter struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startCutter(t *testing.T, target string) *cutter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{lis: lis, target: target, conns: map[net.Conn]bool{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(func() {
		lis.Close()
		c.setCut(true)
		c.wg.Wait()
	})
	return c
}

func (c *cutter) url() string { return "http://" + c.lis.Addr().String() }

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.lis.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.cut {
			c.mu.Unlock()
			conn.Close()
			continue
		}
		up, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			conn.Close()
			continue
		}
		c.conns[conn], c.conns[up] = true, true
		c.mu.Unlock()
		c.wg.Add(2)
		go c.pipe(conn, up)
		go c.pipe(up, conn)
	}
}

func (c *cutter) pipe(dst, src net.Conn) {
	defer c.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// setCut refuses (true) or lets through (false) connections; cutting
// also closes the open ones.
func (c *cutter) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for conn := range c.conns {
			conn.Close()
		}
		clear(c.conns)
	}
}
