package registry

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// Settings passed to role processes.
const (
	envEtcd    = "QUAESTOR_REGISTRY_TEST_ETCD"
	envService = "QUAESTOR_REGISTRY_TEST_SERVICE"
	envName    = "QUAESTOR_REGISTRY_TEST_NAME"
	envDir     = "QUAESTOR_REGISTRY_TEST_DIR"
	envPeer    = "QUAESTOR_REGISTRY_TEST_PEER"
	envCluster = "QUAESTOR_REGISTRY_TEST_CLUSTER"
)

// runRegistrant serves Echo, registers it with a 2 s lease and serves until
// killed. It prints its address once registered.
func runRegistrant() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: "registrant"}))
	go func() { _ = srv.Serve(lis) }()
	cfg := DefaultEtcdConfig()
	cfg.Mode = ModeExternal
	cfg.Endpoints = strings.Split(os.Getenv(envEtcd), ",")
	client, err := NewClient(cfg)
	if err != nil {
		return err
	}
	reg, err := NewRegistrar(RegistrarOptions{Client: client, TTL: MinLeaseTTL, Logger: quietLogger})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := lis.Addr().String()
	if err := reg.Register(ctx, Instance{Service: os.Getenv(envService), Addr: addr}); err != nil {
		return err
	}
	fmt.Println(addr)
	select {} // until killed
}

// runMember runs one member of a multi-member etcd cluster until SIGTERM.
func runMember() error {
	member, err := StartEmbedded(EmbeddedOptions{
		Name:           os.Getenv(envName),
		Dir:            os.Getenv(envDir),
		ClientURL:      os.Getenv(envEtcd),
		PeerURL:        os.Getenv(envPeer),
		InitialCluster: os.Getenv(envCluster),
		StartTimeout:   60 * time.Second,
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	select {
	case <-stop:
	case err := <-member.Err():
		fmt.Fprintln(os.Stderr, "member failed:", err)
	}
	member.Close()
	return nil
}

// startRole runs the test binary as role with env; the returned reader is
// its standard output. The process is killed at the end of the test.
func startRole(t *testing.T, role string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewReader(out)
}
