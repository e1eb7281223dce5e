// Package loopbackport picks 127.0.0.1 ports for tests that stop a server
// and start it again on the same address (etcd members, quaestor run).
package loopbackport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

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
		addr := fmt.Sprintf("127.0.0.1:%d", 1024+rand.IntN(low-1024))
		lis, err := net.Listen("tcp", addr)
		if err == nil {
			lis.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("loopbackport: no free port below %d after 100 tries", low)
}
