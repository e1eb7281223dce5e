package loopbackport

import (
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNeverTheSameTwice takes many ports in turn, each closed before the
// next is taken, as tests do for a client and a peer URL: all differ and
// each can be listened on.
func TestNeverTheSameTwice(t *testing.T) {
	seen := map[string]bool{}
	for i := range 300 {
		pick := FreeAddr
		if i%10 == 0 {
			pick = Restartable
		}
		addr, err := pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("call %d: %s handed out twice", i, addr)
		}
		seen[addr] = true
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		lis.Close()
	}
}
