//go:build !race

package frames

import (
	"syscall"
	"unsafe"
)

// On Linux the engine's reads and writes of its non-blocking sockets are
// raw system calls. They never block, so the Go scheduler need not know
// of them: syscall.Read and Write tell it, and then its monitor thread
// keeps waking every 20 µs to take the processor from any that lasts
// past a tick, waking a thread to run the rest, and on a machine whose
// processes outnumber its cores such calls often last that long (the
// peer they wake takes the core). Measured under unary-16 over 10
// instances: the monitor was 14 % of the proxy's CPU; raw calls halved
// its sleeps and took a third of the futex wake-ups away.

func rawWrite(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, b) }

func rawRead(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, b) }

func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// rawWritev writes the pieces of vec with one writev, described in iov
// (a scratch kept by the caller, emptied again so that it holds on to
// no buffer).
func rawWritev(fd int, vec [][]byte, iov *[]syscall.Iovec) (int, error) {
	s := (*iov)[:0]
	for _, p := range vec {
		if len(p) > 0 {
			v := syscall.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			s = append(s, v)
		}
	}
	*iov = s
	if len(s) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&s[0])), uintptr(len(s)))
	clear(s)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
