//go:build linux

package frames

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestWriterLends: DATA lent to a writer goes out exactly as if it had
// been copied, though the lender writes over its buffer as soon as its
// batch is flushed, the socket takes only part of a write, and another
// goroutine appends frames to the same writer meanwhile (and flushes
// them with a batch of its own, or through the write loop).
func TestWriterLends(t *testing.T) {
	client, server := tcpPair(t)
	// A small send buffer: writes are often partial, and what the socket
	// does not take is left to the write loop.
	_ = server.(*net.TCPConn).SetWriteBuffer(32 << 10)
	w := newWriter(server)
	w.peerMaxFrame = 16 << 10
	loopDone := make(chan error, 1)
	go func() { loopDone <- w.loop() }()

	const rounds = 200
	rng := rand.New(rand.NewPCG(1, 2))
	var want1, want3 bytes.Buffer
	lent := 0

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // another producer: small DATA on stream 3, flushed its own ways
		defer wg.Done()
		var b batch
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range rounds {
			p := make([]byte, 1+rng.IntN(6000))
			for j := range p {
				p[j] = byte(i + j)
			}
			want3.Write(p)
			w.mu.Lock()
			w.dataLocked(3, p, false, nil)
			if i%2 == 0 {
				w.kickLocked(&b)
			} else {
				w.kickLocked(nil) // the write loop's turn
			}
			w.mu.Unlock()
			b.flush()
		}
	}()

	read := make(chan error, 1)
	got := map[uint32]*bytes.Buffer{1: {}, 3: {}}
	total := 0
	go func() {
		fr := http2.NewFramer(nil, client)
		fr.SetMaxReadFrameSize(1 << 20)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				read <- err
				return
			}
			if d, ok := f.(*http2.DataFrame); ok {
				got[d.StreamID].Write(d.Data())
				if d.StreamEnded() {
					read <- nil
					return
				}
			}
		}
	}()

	// The lender: one read buffer, written over after every flush, as a
	// reader's next read does.
	buf := make([]byte, 64<<10)
	b := &batch{}
	for i := range rounds {
		n := 1 + rng.IntN(len(buf))
		for j := range buf[:n] {
			buf[j] = byte(rng.Uint32())
		}
		want1.Write(buf[:n])
		if i%4 == 0 {
			// A writer lends only when idle; with the socket full it
			// may never be, on a busy machine, unless waited for.
			waitIdle(t, w)
		}
		b.lending = true
		w.mu.Lock()
		w.dataLocked(1, buf[:n], false, b)
		if len(w.lent) > 0 {
			lent++
		}
		w.windowUpdateLocked(0, 1) // control frames between the loans
		w.kickLocked(b)
		w.mu.Unlock()
		b.lending = false
		b.flush()
		w.mu.Lock()
		if w.lender == b || w.lentLen != 0 {
			t.Errorf("round %d: loans outlive the flush of their batch", i)
		}
		w.mu.Unlock()
		for j := range buf {
			buf[j] = 0xee
		}
	}
	wg.Wait()
	w.mu.Lock()
	w.dataLocked(1, nil, true, nil)
	w.kickLocked(nil)
	w.mu.Unlock()
	if err := <-read; err != nil {
		t.Fatalf("reading the writer's frames: %v", err)
	}
	w.close()
	if err := <-loopDone; err != nil && err != io.EOF {
		t.Fatalf("write loop: %v", err)
	}
	if lent == 0 {
		t.Fatal("the writer never took a loan")
	}
	for id, want := range map[uint32]*bytes.Buffer{1: &want1, 3: &want3} {
		total += want.Len()
		if !bytes.Equal(got[id].Bytes(), want.Bytes()) {
			t.Errorf("stream %d: %d bytes arrived, differing from the %d sent", id, got[id].Len(), want.Len())
		}
	}
	t.Logf("%d rounds lent DATA, %d bytes in all", lent, total)
}

// waitIdle waits until w has written all it holds and is not writing.
func waitIdle(t *testing.T, w *writer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		idle := !w.writing && w.pendingLocked() == 0
		w.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not drain within 10s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestAdvance: advance drops whole pieces and cuts into the next.
func TestAdvance(t *testing.T) {
	vec := [][]byte{[]byte("ab"), []byte("cde"), []byte("f")}
	vec = advance(vec, 3)
	if len(vec) != 2 || string(vec[0]) != "de" || string(vec[1]) != "f" {
		t.Fatalf("advance 3: %q", vec)
	}
	if vec = advance(vec, 3); len(vec) != 0 {
		t.Fatalf("advance to the end: %q", vec)
	}
}

// TestWriterLendsToOneBatch: a writer another batch will wake takes a
// loan too, and the lender's flush visits it, so that the loan does not
// outlive the lender's buffer; a writer that holds one batch's loans
// copies another's DATA.
func TestWriterLendsToOneBatch(t *testing.T) {
	client, server := tcpPair(t)
	w := newWriter(server)
	p := make([]byte, 16<<10)
	lender, other := &batch{lending: true}, &batch{lending: true}

	w.mu.Lock()
	w.windowUpdateLocked(0, 1)
	w.kickLocked(other)
	w.dataLocked(1, p, false, lender)
	w.kickLocked(lender)
	took := w.lentLen
	w.dataLocked(1, p, false, other)
	w.kickLocked(other)
	w.mu.Unlock()
	if took != len(p) {
		t.Errorf("the writer took a loan of %d bytes, want %d", took, len(p))
	}
	lender.flush()
	w.mu.Lock()
	if w.lentLen != 0 || w.lender != nil {
		t.Errorf("%d lent bytes outlive their lender's flush", w.lentLen)
	}
	if w.lentLen+len(w.buf) != 0 {
		t.Errorf("%d bytes left after the flush, want all written", w.lentLen+len(w.buf))
	}
	w.mu.Unlock()
	other.flush()

	want := 9 + 4 + 2*(9+len(p))
	got := make([]byte, want)
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("reading the %d bytes written: %v", want, err)
	}
}
