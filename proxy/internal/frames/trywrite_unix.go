//go:build unix

package frames

import "syscall"

const canTryWrite = true

// tryWrite writes what the socket takes of b without blocking.
func tryWrite(raw syscall.RawConn, b []byte) (n int, err error) {
	ctlErr := raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := syscall.Write(int(fd), b[n:])
			if k > 0 {
				n += k
			}
			switch e {
			case nil:
				continue
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
			default:
				err = e
			}
			break
		}
		return true // never wait for the socket: the write loop does
	})
	if err == nil {
		err = ctlErr
	}
	return n, err
}
