//go:build !unix

package frames

import "syscall"

const canTryWrite = false

// tryWrite is not available here: the write loop writes everything.
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }
