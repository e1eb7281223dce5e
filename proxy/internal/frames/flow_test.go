package frames

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// countingStreamBackend serves methodServerStream like testHandler and
// counts the messages sent by its handlers of streams of 1 MiB messages.
func countingStreamBackend(t *testing.T, sent *atomic.Int64) *testBackend {
	return startBackend(t, func(srv any, ss grpc.ServerStream) error {
		if method, _ := grpc.MethodFromServerStream(ss); method != methodServerStream {
			return testHandler(srv, ss)
		}
		return sendServerStream(ss, func(size uint32) {
			if size == 1<<20 {
				sent.Add(1)
			}
		})
	})
}

func heapInuse() uint64 {
	// Twice: what sync.Pools hold (the engine's chunks, gRPC's buffers)
	// survives one collection.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestFlowSlowClientBounded: a client that never gives window back asks
// for a 64 MiB server stream. The engine holds a bounded amount for it
// (the backend is held back by the stream window, it does not get to send
// it all), and other calls to the same backend keep flowing.
func TestFlowSlowClientBounded(t *testing.T) {
	ctx := testContext(t)
	var sent atomic.Int64
	b := countingStreamBackend(t, &sent)
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	// Connect the backend first, so the heap baseline includes its
	// connection.
	if _, err := unary(ctx, cc, methodUnary, []byte("warm up")); err != nil {
		t.Fatal(err)
	}
	before := heapInuse()

	const count, size = 64, 1 << 20
	slow, frames := dialRawClient(t, e.addr, true)
	if err := slow.headers(1, false, grpcRequestHeaders(methodServerStream)...); err != nil {
		t.Fatal(err)
	}
	req := grpcMessage(serverStreamRequest(count, size))
	if err := slow.write(func(w *http2.Framer) error { return w.WriteData(1, true, req) }); err != nil {
		t.Fatal(err)
	}
	// The client's windows (65535 bytes) fill up.
	got := 0
	for got < 65535 {
		f := nextFrame(ctx, t, frames, "DATA", func(f rawFrame) bool { return f.Type == http2.FrameData || f.Type == http2.FrameRSTStream })
		if f.Type == http2.FrameRSTStream {
			t.Fatalf("stream reset: %v", f.Code)
		}
		got += f.Data
	}

	// Other calls to the backend, over the same backend connection, go
	// through while the slow stream is stuck.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range uint32(20) {
		wg.Go(func() {
			s, err := cc.NewStream(ctx, streamDesc, methodServerStream)
			if err == nil {
				req := serverStreamRequest(4, 256<<10)
				err = s.SendMsg(&req)
			}
			for k := uint32(0); err == nil && k < 4; k++ {
				var msg []byte
				if err = s.RecvMsg(&msg); err == nil && !bytes.Equal(msg, patterned(k, 256<<10)) {
					err = fmt.Errorf("message %d differs", k)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("call %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Watch the stuck stream for a while (bounded): an engine that
	// buffered without bound would let the backend send all 64 MiB in
	// far less.
	held := sent.Load()
	for range 20 {
		time.Sleep(20 * time.Millisecond) // an observation window: nothing to wait for
		held = sent.Load()
		if held == count {
			break
		}
	}
	growth := int64(heapInuse()) - int64(before)
	t.Logf("backend sent %d of %d MiB to a client that took 64 KiB; heap in use grew %d KiB", held, count, growth>>10)
	if held >= count/2 {
		t.Errorf("the backend sent %d of %d MiB to a client that read 64 KiB: nothing held it back", held, count)
	}
	if growth > 8<<20 {
		t.Errorf("heap in use grew by %d MiB for one slow stream, want < 8 MiB", growth>>20)
	}
	select {
	case f := <-frames:
		if f.Type == http2.FrameData && f.StreamID == 1 {
			t.Errorf("DATA beyond the client's window (%d bytes more)", f.Data)
		}
	default:
	}
}

// readMessages splits a gRPC message stream.
func readMessages(t *testing.T, stream []byte) [][]byte {
	t.Helper()
	var msgs [][]byte
	for len(stream) > 0 {
		if len(stream) < 5 {
			t.Fatalf("%d bytes left, a message prefix is 5", len(stream))
		}
		n := int(binary.BigEndian.Uint32(stream[1:5]))
		if len(stream) < 5+n {
			t.Fatalf("message of %d bytes, %d left", n, len(stream)-5)
		}
		msgs = append(msgs, stream[5:5+n])
		stream = stream[5+n:]
	}
	return msgs
}

// TestFlowPeerChangesInitialWindow: a client changes
// SETTINGS_INITIAL_WINDOW_SIZE mid-stream, lowering it below what is in
// flight and then raising it; the stream's window follows and the data
// arrive whole and in order.
func TestFlowPeerChangesInitialWindow(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	const count, size = 4, 1 << 20
	c, frames := dialRawClient(t, e.addr, true, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 40000})
	c.keepData.Store(true)
	if err := c.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(0, 64<<20) }); err != nil {
		t.Fatal(err)
	}
	if err := c.headers(1, false, grpcRequestHeaders(methodServerStream)...); err != nil {
		t.Fatal(err)
	}
	req := grpcMessage(serverStreamRequest(count, size))
	if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, true, req) }); err != nil {
		t.Fatal(err)
	}
	var stream []byte
	readData := func(until int) {
		t.Helper()
		for len(stream) < until {
			f := nextFrame(ctx, t, frames, "DATA", func(f rawFrame) bool { return f.StreamID == 1 })
			if f.Type == http2.FrameRSTStream || f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream) {
				t.Fatalf("stream ended after %d bytes: %v %v", len(stream), f.Type, f.Code)
			}
			stream = append(stream, f.Payload...)
		}
	}
	readData(40000)
	// Lower the window below what the stream has used (its window goes
	// negative), then give it 100000 bytes: 60000 of them are usable.
	setWindow := func(v uint32) {
		t.Helper()
		if err := c.write(func(w *http2.Framer) error {
			return w.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: v})
		}); err != nil {
			t.Fatal(err)
		}
	}
	setWindow(1000)
	if err := c.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(1, 100000) }); err != nil {
		t.Fatal(err)
	}
	readData(40000 + 61000)
	// Raise it past the whole stream: the rest comes.
	setWindow(8 << 20)
	total := count * (size + 5)
	readData(total)
	end := nextFrame(ctx, t, frames, "trailers", func(f rawFrame) bool { return f.StreamID == 1 })
	if end.Type != http2.FrameHeaders || fieldValue(end.Headers, "grpc-status") != "0" {
		t.Fatalf("after the data: %v %v, want trailers with grpc-status 0", end.Type, end.Headers)
	}
	if len(stream) != total {
		t.Fatalf("got %d bytes, want %d", len(stream), total)
	}
	for i, msg := range readMessages(t, stream) {
		if !bytes.Equal(msg, patterned(uint32(i), size)) {
			t.Fatalf("message %d differs", i)
		}
	}
}

// TestFlowGRPCClientBDP runs a 64 MiB server stream to a grpc-go client,
// whose BDP estimator raises its windows (SETTINGS and WINDOW_UPDATE)
// while the data flows; every byte arrives in place.
func TestFlowGRPCClientBDP(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	cc := dial(t, e.addr)
	serverStreamWhole(ctx, t, cc, 64, 1<<20)
}
