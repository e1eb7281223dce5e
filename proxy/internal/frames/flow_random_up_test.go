package frames

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// windowBackend is a raw backend for client streams that gives window
// back in random pieces, some late, and answers each request with its
// length and CRC-32.
type windowBackend struct {
	mu      sync.Mutex
	r       *rand.Rand
	initial int64
	streams map[uint32]*requestSum
	// connWindow is what the engine may still send on the connection;
	// overrun describes the first DATA it sent beyond a window.
	connWindow int64
	overrun    string
	// late counts the window updates still to be sent.
	late sync.WaitGroup
}

type requestSum struct {
	n      uint64
	crc    uint32
	window int64 // what the engine may still send on the stream
}

// grant sends a window update and counts it; called with mu held.
func (b *windowBackend) grant(p *rawPeer, id, incr uint32) {
	if id == 0 {
		b.connWindow += int64(incr)
	} else if sum := b.streams[id]; sum != nil {
		sum.window += int64(incr)
	}
	_ = p.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(id, incr) })
}

func (b *windowBackend) handle(p *rawPeer, f http2.Frame) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		b.streams[f.StreamID] = &requestSum{window: b.initial}
	case *http2.RSTStreamFrame:
		delete(b.streams, f.StreamID)
	case *http2.DataFrame:
		sum := b.streams[f.StreamID]
		if sum == nil {
			return // a stream reset: only its last frames come
		}
		id, n := f.StreamID, f.Header().Length
		sum.n += uint64(len(f.Data()))
		sum.crc = crc32.Update(sum.crc, crc32.IEEETable, f.Data())
		sum.window -= int64(n)
		b.connWindow -= int64(n)
		if (sum.window < 0 || b.connWindow < 0) && b.overrun == "" {
			b.overrun = fmt.Sprintf("stream %d: %d bytes of DATA with %d left in the stream's window and %d in the connection's",
				id, n, sum.window+int64(n), b.connWindow+int64(n))
		}
		if n > 0 {
			b.grant(p, 0, n)
			// Give the stream back what it sent and up to 16 KiB more, in
			// up to three pieces, each at once or up to 2 ms later.
			give := n + uint32(b.r.IntN(16<<10))
			for k := b.r.IntN(3); give > 0; k-- {
				piece := give
				if k > 0 {
					piece = 1 + uint32(b.r.IntN(int(give)))
				}
				give -= piece
				if b.r.IntN(2) == 0 {
					b.grant(p, id, piece)
					continue
				}
				b.late.Add(1)
				time.AfterFunc(time.Duration(b.r.IntN(2000))*time.Microsecond, func() {
					defer b.late.Done()
					b.mu.Lock()
					defer b.mu.Unlock()
					b.grant(p, id, piece)
				})
			}
		}
		if f.StreamEnded() {
			delete(b.streams, id)
			resp := binary.BigEndian.AppendUint64(nil, sum.n)
			p.answer(id, grpcMessage(binary.BigEndian.AppendUint32(resp, sum.crc)))
		}
	}
}

// TestFlowRandomRequests runs client streams of random messages (some
// totalling whole queue chunks) through the engine to backends with small
// initial windows that give window back in random pieces, some late; now
// and then the client cancels. Every call that is not cancelled reaches
// the backend whole, and the engine ends every call.
func TestFlowRandomRequests(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for i, win := range []uint32{1, 1000, 16384, chunkSize, 65535} {
		t.Run(strconv.Itoa(int(win)), func(t *testing.T) {
			ctx := testContext(t)
			backend := &windowBackend{r: rand.New(rand.NewPCG(seed, uint64(i))), initial: int64(win),
				streams: map[uint32]*requestSum{}, connWindow: initialWindow}
			// Once the backend has stopped (cleanups run last first), no
			// more late updates are started.
			t.Cleanup(backend.late.Wait)
			b := startRawServer(t, backend.handle, http2.Setting{ID: http2.SettingInitialWindowSize, Val: win})
			e := startEngine(t, Config{}, b.addr)
			cc := dial(t, e.addr)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(seed, uint64(100*i+g)))
					for range 10 {
						if err := randomRequest(ctx, cc, r, 1<<30); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			testwait.For(ctx, t, "the engine to end every call", func() bool { return e.InFlight() == 0 })
			backend.mu.Lock()
			defer backend.mu.Unlock()
			if backend.overrun != "" {
				t.Errorf("the engine sent beyond the backend's windows: %s", backend.overrun)
			}
		})
	}
}

// randomRequest makes one client stream of at most maxBytes and checks
// what the backend got, unless it cancels the call.
func randomRequest(ctx context.Context, cc *grpc.ClientConn, r *rand.Rand, maxBytes int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, methodClientStream)
	if err != nil {
		return err
	}
	cancelAt := -1
	if r.IntN(8) == 0 {
		cancelAt = r.IntN(3)
	}
	var n uint64
	var crc uint32
	count := 1 + r.IntN(5)
	for k := range count {
		if k == cancelAt {
			cancel()
			_, err := stream.Header()
			if err == nil {
				err = stream.RecvMsg(new([]byte))
			}
			if status.Code(err) != codes.Canceled {
				return fmt.Errorf("cancelled call: %v, want CANCELED", err)
			}
			return nil
		}
		size := r.IntN(48 << 10)
		if int(n)+5+size > maxBytes {
			break
		}
		if k == count-1 && r.IntN(3) == 0 {
			// Bring the stream (messages and their prefixes) to a whole
			// number of queue chunks.
			size = (chunkSize - (int(n)+5)%chunkSize) % chunkSize
		}
		msg := make([]byte, size)
		for j := range msg {
			msg[j] = byte(r.Uint32())
		}
		if err := stream.SendMsg(&msg); err != nil {
			return fmt.Errorf("sending message %d: %w", k, err)
		}
		n += uint64(5 + size)
		crc = crc32.Update(crc, crc32.IEEETable, grpcMessage(msg))
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	var resp []byte
	if err := stream.RecvMsg(&resp); err != nil {
		return fmt.Errorf("after %d bytes sent: %w", n, err)
	}
	if len(resp) != 12 || binary.BigEndian.Uint64(resp) != n || binary.BigEndian.Uint32(resp[8:]) != crc {
		return fmt.Errorf("the backend got %x, want %d bytes with CRC %08x", resp, n, crc)
	}
	if err := stream.RecvMsg(new([]byte)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the response: %v, want its end", err)
	}
	return nil
}
