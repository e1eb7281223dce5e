//go:build unix && !linux

package frames

import (
	"net"
	"syscall"
)

func rawWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

// rawReader is Linux's only: elsewhere connections are read through
// net.Conn.
type rawReader struct{}

func newRawReader(net.Conn) *rawReader { return nil }

func (*rawReader) read([]byte) (int, error) { panic("unreachable") }
