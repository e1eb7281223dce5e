package frames

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestChunkQueue pushes, peeks, consumes and copies random runs of
// bytes against a plain buffer, across chunks of every class.
func TestChunkQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 100, 1 << 10, 1<<10 + 1, 3000, 4 << 10, 16 << 10, chunkSize, chunkSize + 7, 100 << 10}
	for range 2000 {
		var q chunkQueue
		var want []byte
		for range 1 + rng.IntN(6) {
			if rng.IntN(3) > 0 || q.len() == 0 {
				p := make([]byte, sizes[rng.IntN(len(sizes))])
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				q.push(p)
				want = append(want, p...)
			} else {
				run := q.peek()
				n := 1 + rng.IntN(len(run))
				if !bytes.Equal(run[:n], want[:n]) {
					t.Fatalf("peek: the bytes differ from what was pushed")
				}
				q.consume(n)
				want = want[n:]
			}
			if q.len() != len(want) {
				t.Fatalf("len %d, want %d", q.len(), len(want))
			}
		}
		var dst chunkQueue
		q.copyTo(&dst)
		var got []byte
		for dst.len() > 0 {
			run := dst.peek()
			got = append(got, run...)
			dst.consume(len(run))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("copyTo: %d bytes, want %d (or they differ)", len(got), len(want))
		}
		q.reset()
		if q.len() != 0 || q.peek() != nil {
			t.Fatal("reset left bytes")
		}
	}
}

// TestChunkQueueFirstChunk: the first chunk is the smallest that holds
// the first push (a small request keeps 1 KiB, not 32), the next ones
// are chunkSize.
func TestChunkQueueFirstChunk(t *testing.T) {
	for _, tc := range []struct{ first, want int }{
		{105, 1 << 10}, {1 << 10, 1 << 10}, {1<<10 + 1, 4 << 10}, {16 << 10, chunkSize}, {100 << 10, chunkSize},
	} {
		var q chunkQueue
		q.push(make([]byte, tc.first))
		if got := len(q.chunks[0].b); got != tc.want {
			t.Errorf("first push of %d bytes: a chunk of %d, want %d", tc.first, got, tc.want)
		}
		q.push(make([]byte, chunkSize))
		if got := len(q.chunks[len(q.chunks)-1].b); got != chunkSize {
			t.Errorf("after a first push of %d bytes: a next chunk of %d, want %d", tc.first, got, chunkSize)
		}
		q.reset()
	}
}

// TestChunkQueueAllocs: a queue filled and emptied again allocates
// nothing once its pools hold chunks.
func TestChunkQueueAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops chunks on purpose; make test runs this package without it too")
	}
	var q chunkQueue
	small, large := make([]byte, 105), make([]byte, 40<<10)
	allocs := testing.AllocsPerRun(100, func() {
		q.push(small)
		q.reset()
		q.push(large)
		for q.len() > 0 {
			q.consume(len(q.peek()))
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per fill, want 0", allocs)
	}
}
