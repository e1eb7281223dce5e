//go:build unix

package frames

import "syscall"

const canTryWrite = true

// rawWriter writes to a socket without blocking. Its write function is
// made once, so that a write allocates nothing (a closure passed to
// RawConn.Write would escape, once per write).
type rawWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool
	// b is being written; n and err are the outcome.
	b   []byte
	n   int
	err error
}

func newRawWriter(raw syscall.RawConn) *rawWriter {
	rw := &rawWriter{raw: raw}
	rw.fn = rw.write
	return rw
}

// tryWrite writes what the socket takes of b without blocking. One
// caller at a time.
func (rw *rawWriter) tryWrite(b []byte) (int, error) {
	rw.b, rw.n, rw.err = b, 0, nil
	if err := rw.raw.Write(rw.fn); err != nil && rw.err == nil {
		rw.err = err
	}
	n, err := rw.n, rw.err
	rw.b = nil
	return n, err
}

func (rw *rawWriter) write(fd uintptr) bool {
	for rw.n < len(rw.b) {
		k, err := rawWrite(int(fd), rw.b[rw.n:])
		if k > 0 {
			rw.n += k
		}
		switch err {
		case nil, syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			rw.err = err
		}
		break
	}
	return true // never wait for the socket: the write loop does
}
