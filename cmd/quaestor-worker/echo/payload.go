package echo

import "sync/atomic"

// sharedPayload hands out read-only, zero-filled slices of one buffer, grown
// to the largest size asked for so far, so that large responses (the
// benchmarks ask for 1 MiB) cost no allocation or fill per call. The buffer
// is never written after it is made: marshalling only reads it, so any number
// of calls may send it at once.
type sharedPayload struct {
	buf atomic.Pointer[[]byte]
}

// bytes returns n bytes that the caller must not modify.
func (p *sharedPayload) bytes(n int) []byte {
	for {
		cur := p.buf.Load()
		if cur != nil && len(*cur) >= n {
			return (*cur)[:n:n]
		}
		grown := make([]byte, n)
		// Losing the race to a concurrent grow is harmless: retry with
		// whichever buffer won.
		if p.buf.CompareAndSwap(cur, &grown) {
			return grown[:n:n]
		}
	}
}
