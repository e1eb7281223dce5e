//go:build !linux

package proxy

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist (gRPC
// sets it on Linux only); keepalive pings find dead clients.
func setUserTimeout(net.Conn, time.Duration) {}
