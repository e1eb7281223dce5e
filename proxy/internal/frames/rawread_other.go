//go:build !linux

package frames

import "net"

// rawReader is Linux's only: elsewhere connections are read through
// net.Conn.
type rawReader struct{}

func newRawReader(net.Conn) *rawReader { return nil }

func (*rawReader) read([]byte) (int, error) { panic("unreachable") }

// canLend: writers send lent DATA with vectored writes on Linux only
// (see writer.dataLocked); elsewhere they copy it.
const canLend = false
