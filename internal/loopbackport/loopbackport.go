// Package loopbackport picks 127.0.0.1 ports for tests and the benchmark
// harness: ports for servers that start on an address named in advance
// (etcd members, quaestor run), never the same one twice in a process.
package loopbackport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given holds every port handed out in this process. The kernel may give a
// port that was just closed to the next listener on port 0, so two ports
// taken one after the other can be the same: a client and a peer URL, say.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// take records port as handed out; false if it was already.
func take(port int) bool {
	given.Lock()
	defer given.Unlock()
	if given.ports[port] {
		return false
	}
	given.ports[port] = true
	return true
}

// Free returns a 127.0.0.1 port that is free now and that no other call in
// this process has returned.
func Free() (int, error) {
	var held []net.Listener // keeps ports already handed out from coming back
	defer func() {
		for _, lis := range held {
			lis.Close()
		}
	}()
	for range 100 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("loopbackport: %w", err)
		}
		held = append(held, lis)
		if port := lis.Addr().(*net.TCPAddr).Port; take(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("loopbackport: no new port after 100 tries")
}

// FreeAddr is Free as an address, 127.0.0.1:port.
func FreeAddr() (string, error) {
	port, err := Free()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// Restartable returns a 127.0.0.1 address that is free now, for a server
// that is stopped and started again on it. Its port lies below the
// kernel's range of ephemeral ports: there, the source port of any
// outgoing connection could take it while its server is down.
func Restartable() (string, error) {
	low := 32768 // Linux's default ip_local_port_range starts here
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				low = n
			}
		}
	}
	for range 100 {
		port := 1024 + rand.IntN(low-1024)
		lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			lis.Close()
			if take(port) {
				return lis.Addr().String(), nil
			}
		}
	}
	return "", fmt.Errorf("loopbackport: no free port below %d after 100 tries", low)
}
