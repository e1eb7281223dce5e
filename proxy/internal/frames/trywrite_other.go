//go:build !unix

package frames

import (
	"errors"
	"syscall"
)

const canTryWrite = false

// rawWriter is not available here: the write loop writes everything.
type rawWriter struct{}

func newRawWriter(syscall.RawConn) *rawWriter { return nil }

func (*rawWriter) tryWrite([]byte) (int, error) { return 0, errors.ErrUnsupported }

func (*rawWriter) tryWritev([][]byte) (int, error) { return 0, errors.ErrUnsupported }
