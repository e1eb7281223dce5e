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

// rawWriter writes to a socket without blocking, from the pieces of vec
// (one for a plain buffer, kept in one), with iov the scratch of their
// descriptions for a vectored write.
type rawWriter struct {
	rawOp
	vec [][]byte
	one [1][]byte
	iov []syscall.Iovec
}

func newRawWriter(raw syscall.RawConn) *rawWriter {
	rw := &rawWriter{rawOp: rawOp{raw: raw}}
	rw.fn = rw.write
	return rw
}

// tryWrite writes what the socket takes of b without blocking. One
// caller at a time.
func (rw *rawWriter) tryWrite(b []byte) (int, error) {
	rw.one[0] = b
	n, err := rw.tryWritev(rw.one[:])
	rw.one[0] = nil
	return n, err
}

// tryWritev is tryWrite of the pieces of vec, in one system call; it may
// reslice vec's elements.
func (rw *rawWriter) tryWritev(vec [][]byte) (int, error) {
	rw.vec = vec
	n, err := rw.do(syscall.RawConn.Write, nil)
	rw.vec = nil
	return n, err
}

func (rw *rawWriter) write(fd uintptr) bool {
	for len(rw.vec) > 0 {
		var (
			k   int
			err error
		)
		if len(rw.vec) == 1 {
			k, err = rawWrite(int(fd), rw.vec[0])
		} else {
			k, err = rawWritev(int(fd), rw.vec, &rw.iov)
		}
		rw.n += max(k, 0)
		rw.vec = advance(rw.vec, max(k, 0))
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

// advance drops the first n bytes of vec's pieces, and the empty
// pieces that follow them.
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
