//go:build unix

package frames

import "syscall"

const canTryWrite = true

// rawOp is one socket operation at a time through a RawConn: the buffer
// b, the outcome n and err, and the function RawConn.Read or Write
// calls, made once, so that an operation allocates nothing (a closure
// passed to RawConn would escape, once per call).
type rawOp struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

// do runs fn through call (RawConn.Read or Write) on b.
func (o *rawOp) do(call func(syscall.RawConn, func(uintptr) bool) error, b []byte) (int, error) {
	o.b, o.n, o.err = b, 0, nil
	if err := call(o.raw, o.fn); err != nil && o.err == nil {
		o.err = err
	}
	n, err := o.n, o.err
	o.b = nil
	return n, err
}

// rawWriter writes to a socket without blocking.
type rawWriter struct{ rawOp }

func newRawWriter(raw syscall.RawConn) *rawWriter {
	rw := &rawWriter{rawOp{raw: raw}}
	rw.fn = rw.write
	return rw
}

// tryWrite writes what the socket takes of b without blocking. One
// caller at a time.
func (rw *rawWriter) tryWrite(b []byte) (int, error) {
	return rw.do(syscall.RawConn.Write, b)
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
