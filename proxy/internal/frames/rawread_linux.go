package frames

import (
	"io"
	"net"
	"syscall"
)

// rawReader reads a socket through its RawConn, with a raw read, and
// waits in the poller as net.Conn.Read does when the socket is empty.
type rawReader struct{ rawOp }

// newRawReader returns a rawReader for nc, or nil when nc is not a
// socket of its own (TLS, a test's pipe).
func newRawReader(nc net.Conn) *rawReader {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rawOp{raw: raw}}
	r.fn = r.readFD
	return r
}

func (r *rawReader) read(b []byte) (int, error) {
	return r.do(syscall.RawConn.Read, b)
}

// readFD reads once into r.b; false (wait for the socket) when it is
// empty. Like net.Conn.Read, it reads before waiting: the poller's
// readiness was cleared before it is called.
func (r *rawReader) readFD(fd uintptr) bool {
	for {
		n, err := rawRead(int(fd), r.b)
		switch err {
		case nil:
			r.n = n
			if n == 0 && len(r.b) > 0 {
				r.err = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.err = err
			return true
		}
	}
}

// canLend: writers send lent DATA with vectored writes (see
// writer.dataLocked).
const canLend = true
