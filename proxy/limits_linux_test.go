package proxy

import (
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUserTimeoutWithoutLimit: accepted client connections get the
// keepalive timeout as TCP_USER_TIMEOUT whether or not
// proxy.max_connections limits them.
func TestUserTimeoutWithoutLimit(t *testing.T) {
	for _, limit := range []int64{0, 10} {
		l := &connLimiter{max: limit, userTimeout: 7 * time.Second, logger: slog.New(slog.DiscardHandler), now: time.Now}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		wrapped := l.listener(lis)
		client, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := wrapped.Accept()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := conn.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var getErr error
		if err := raw.Control(func(fd uintptr) {
			got, getErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		}); err != nil || getErr != nil {
			t.Fatal(err, getErr)
		}
		if got != 7000 {
			t.Errorf("max_connections %d: TCP_USER_TIMEOUT %d ms, want 7000", limit, got)
		}
		_ = conn.Close()
		_ = client.Close()
		_ = lis.Close()
	}
}
