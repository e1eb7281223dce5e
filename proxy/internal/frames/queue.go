package frames

import "sync"

// chunkSize is the unit of the memory that holds DATA waiting in a half:
// chunks come from a pool and go back to it as they drain, so a stream's
// backlog costs no allocation in the steady state, however many calls
// come and go.
const chunkSize = 32 << 10

var chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// chunkQueue is a FIFO of bytes in pooled chunks.
type chunkQueue struct {
	chunks []*[chunkSize]byte
	// head is the read offset in chunks[0], tail the write offset in the
	// last chunk; size the bytes queued.
	head, tail, size int
}

func (q *chunkQueue) len() int { return q.size }

// push appends a copy of p.
func (q *chunkQueue) push(p []byte) {
	for len(p) > 0 {
		if len(q.chunks) == 0 || q.tail == chunkSize {
			q.chunks = append(q.chunks, chunkPool.Get().(*[chunkSize]byte))
			q.tail = 0
		}
		n := copy(q.chunks[len(q.chunks)-1][q.tail:], p)
		q.tail += n
		q.size += n
		p = p[n:]
	}
}

// peek returns the first contiguous run of queued bytes, valid until the
// next push or consume.
func (q *chunkQueue) peek() []byte {
	if q.size == 0 {
		return nil
	}
	end := chunkSize
	if len(q.chunks) == 1 {
		end = q.tail
	}
	return q.chunks[0][q.head:end]
}

// consume drops the first n bytes, n at most len(peek()).
func (q *chunkQueue) consume(n int) {
	q.head += n
	q.size -= n
	if q.size == 0 {
		q.reset()
		return
	}
	if q.head == chunkSize {
		chunkPool.Put(q.chunks[0])
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
}

// copyTo appends the queued bytes to dst.
func (q *chunkQueue) copyTo(dst *chunkQueue) {
	for i, c := range q.chunks {
		start, end := 0, chunkSize
		if i == 0 {
			start = q.head
		}
		if i == len(q.chunks)-1 {
			end = q.tail
		}
		dst.push(c[start:end])
	}
}

// reset empties the queue, returning its chunks to the pool.
func (q *chunkQueue) reset() {
	for i, c := range q.chunks {
		chunkPool.Put(c)
		q.chunks[i] = nil
	}
	q.chunks = q.chunks[:0]
	q.head, q.tail, q.size = 0, 0, 0
}
