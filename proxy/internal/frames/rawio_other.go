//go:build unix && !linux

package frames

import "syscall"

func rawWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func rawWritev(fd int, vec [][]byte, _ *[]syscall.Iovec) (int, error) { return writeEach(fd, vec) }
