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

// do runs fn, one of the functions made once, through call
// (RawConn.Read or Write) on b.
func (o *rawOp) do(call func(syscall.RawConn, func(uintptr) bool) error, fn func(uintptr) bool, b []byte) (int, error) {
	o.b, o.n, o.err = b, 0, nil
	if err := call(o.raw, fn); err != nil && o.err == nil {
		o.err = err
	}
	n, err := o.n, o.err
	o.b = nil
	return n, err
}

// rawWriter writes to a socket without blocking: from one buffer (b)
// or from pieces (vec, with iov the scratch of their descriptions).
type rawWriter struct {
	rawOp
	writev func(fd uintptr) bool
	vec    [][]byte
	iov    []syscall.Iovec
}

func newRawWriter(raw syscall.RawConn) *rawWriter {
	rw := &rawWriter{rawOp: rawOp{raw: raw}}
	rw.fn, rw.writev = rw.write, rw.writeVec
	return rw
}

// tryWrite writes what the socket takes of b without blocking. One
// caller at a time.
func (rw *rawWriter) tryWrite(b []byte) (int, error) {
	return rw.do(syscall.RawConn.Write, rw.fn, b)
}

// tryWritev is tryWrite of the pieces of vec, in one system call where
// the platform has vectored writes; it may reslice vec's elements.
func (rw *rawWriter) tryWritev(vec [][]byte) (int, error) {
	rw.vec = vec
	n, err := rw.do(syscall.RawConn.Write, rw.writev, nil)
	rw.vec = nil
	return n, err
}

func (rw *rawWriter) writeVec(fd uintptr) bool {
	for len(rw.vec) > 0 {
		k, err := rawWritev(int(fd), rw.vec, &rw.iov)
		if k > 0 {
			rw.n += k
			rw.vec = advance(rw.vec, k)
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

// advance drops the first n bytes of vec's pieces.
func advance(vec [][]byte, n int) [][]byte {
	for len(vec) > 0 && n >= len(vec[0]) {
		n -= len(vec[0])
		vec = vec[1:]
	}
	if n > 0 {
		vec[0] = vec[0][n:]
	}
	return vec
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

// writeEach writes the pieces of vec one after the other, as far as the
// socket takes them: a vectored write where the platform has none that
// the engine uses.
func writeEach(fd int, vec [][]byte) (int, error) {
	n := 0
	for _, p := range vec {
		k, err := rawWrite(fd, p)
		if k > 0 {
			n += k
		}
		if err != nil || k < len(p) {
			if n > 0 && err == syscall.EAGAIN {
				err = nil
			}
			return n, err
		}
	}
	return n, nil
}
