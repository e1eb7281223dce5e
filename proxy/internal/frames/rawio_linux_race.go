//go:build linux && race

package frames

import "syscall"

// Under the race detector the reads and writes go through syscall.Read
// and Write, which tell it that bytes written to a connection happen
// before they are read: without that, a test that sets state and then
// sends the bytes that make the engine read it looks like a race.

func rawWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func rawRead(fd int, b []byte) (int, error) { return syscall.Read(fd, b) }

func rawWritev(fd int, vec [][]byte, _ *[]syscall.Iovec) (int, error) { return writeEach(fd, vec) }
