package frames

import "sync"

// chunkSize is the unit of the memory that holds DATA waiting in a half
// and the request bytes a call keeps for a retry: chunks come from pools
// and go back to them as they drain, so a stream's backlog costs no
// allocation in the steady state, however many calls come and go.
//
// A queue's first chunk is the smallest of chunkClasses that holds the
// first bytes pushed, the ones after it chunkSize: most calls' requests
// are a few hundred bytes, and the replay of each of 256 calls in flight
// held 32 KiB (8 MiB) for a 100-byte request.
const chunkSize = 32 << 10

var chunkClasses = [...]int{1 << 10, 4 << 10, chunkSize}

// chunk is one pooled buffer; b's length is its class's size.
type chunk struct {
	b     []byte
	class int
}

var chunkPools [len(chunkClasses)]sync.Pool

// getChunk returns a chunk of the smallest class that holds n bytes, or
// of the largest.
func getChunk(n int) *chunk {
	class := 0
	for class < len(chunkClasses)-1 && chunkClasses[class] < n {
		class++
	}
	if c, ok := chunkPools[class].Get().(*chunk); ok {
		return c
	}
	return &chunk{b: make([]byte, chunkClasses[class]), class: class}
}

func putChunk(c *chunk) { chunkPools[c.class].Put(c) }

// chunkQueue is a FIFO of bytes in pooled chunks.
type chunkQueue struct {
	chunks []*chunk
	// head is the read offset in chunks[0], tail the write offset in the
	// last chunk; size the bytes queued.
	head, tail, size int
}

func (q *chunkQueue) len() int { return q.size }

// push appends a copy of p.
func (q *chunkQueue) push(p []byte) {
	for len(p) > 0 {
		if len(q.chunks) == 0 || q.tail == len(q.chunks[len(q.chunks)-1].b) {
			want := chunkSize
			if len(q.chunks) == 0 {
				want = len(p)
			}
			q.chunks = append(q.chunks, getChunk(want))
			q.tail = 0
		}
		n := copy(q.chunks[len(q.chunks)-1].b[q.tail:], p)
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
	first := q.chunks[0].b
	if len(q.chunks) == 1 {
		return first[q.head:q.tail]
	}
	return first[q.head:]
}

// consume drops the first n bytes, n at most len(peek()).
func (q *chunkQueue) consume(n int) {
	q.head += n
	q.size -= n
	if q.size == 0 {
		q.reset()
		return
	}
	if q.head == len(q.chunks[0].b) {
		// Shifted down, not resliced: the slice keeps its room, and
		// a queue that fills and drains does not allocate it again.
		putChunk(q.chunks[0])
		last := len(q.chunks) - 1
		copy(q.chunks, q.chunks[1:])
		q.chunks[last] = nil
		q.chunks = q.chunks[:last]
		q.head = 0
	}
}

// copyTo appends the queued bytes to dst.
func (q *chunkQueue) copyTo(dst *chunkQueue) {
	for i, c := range q.chunks {
		start, end := 0, len(c.b)
		if i == 0 {
			start = q.head
		}
		if i == len(q.chunks)-1 {
			end = q.tail
		}
		dst.push(c.b[start:end])
	}
}

// reset empties the queue, returning its chunks to the pools.
func (q *chunkQueue) reset() {
	for i, c := range q.chunks {
		putChunk(c)
		q.chunks[i] = nil
	}
	q.chunks = q.chunks[:0]
	q.head, q.tail, q.size = 0, 0, 0
}
