package supervisor

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestStartRefusesPortInUse starts an agent whose second port another
// process listens on: Start fails naming the key, and starts nothing.
func TestStartRefusesPortInUse(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	taken := lis.Addr().(*net.TCPAddr).Port
	agent := workerAgent("worker", 2)
	agent.Ports = []int{freePort(t), taken}
	s, err := New(Options{Config: testConfig(t, agent)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(ctx)
	want := fmt.Sprintf("supervisor.agents[0].ports[1]: 127.0.0.1:%d is already in use (another process is listening; stop it or change the port)", taken)
	if err == nil || err.Error() != want {
		t.Fatalf("Start: %v\nwant %s", err, want)
	}
	var inUse *portInUseError
	if !errors.As(err, &inUse) {
		t.Errorf("Start's error %T is not a *portInUseError", err)
	}
	if st := s.Status(); len(st) != 0 {
		t.Errorf("instances after the refused start: %v", st)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop after the refused start: %v", err)
	}
}

func TestChooseFreePortAvoids(t *testing.T) {
	avoid := map[int]bool{}
	for range 5 {
		port, err := chooseFreePort(avoid)
		if err != nil {
			t.Fatal(err)
		}
		if avoid[port] {
			t.Fatalf("port %d chosen twice", port)
		}
		if err := checkPortFree(port); err != nil {
			t.Errorf("chosen port: %v", err)
		}
		avoid[port] = true
	}
}
