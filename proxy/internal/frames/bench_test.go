package frames

import (
	"testing"
)

// BenchmarkEngineUnary measures unary calls of 100 bytes from a grpc-go
// client through the engine to a grpc-go backend, all in this process:
// allocs/op and B/op count the client's and backend's share too, which
// BenchmarkDirectUnary shows alone.
func BenchmarkEngineUnary(b *testing.B) {
	backend := startBackend(b, nil)
	e := startEngine(b, Config{}, backend.addr)
	benchUnary(b, e.addr)
}

// BenchmarkDirectUnary is BenchmarkEngineUnary without the engine.
func BenchmarkDirectUnary(b *testing.B) {
	benchUnary(b, startBackend(b, nil).addr)
}

func benchUnary(b *testing.B, addr string) {
	ctx := testContext(b)
	cc := dial(b, addr)
	req := patterned(1, 100)
	if _, err := unary(ctx, cc, methodUnary, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := unary(ctx, cc, methodUnary, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineUnaryParallel is BenchmarkEngineUnary with calls in
// parallel over one client connection.
func BenchmarkEngineUnaryParallel(b *testing.B) {
	backend := startBackend(b, nil)
	e := startEngine(b, Config{}, backend.addr)
	ctx := testContext(b)
	cc := dial(b, e.addr)
	req := patterned(1, 100)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := unary(ctx, cc, methodUnary, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEngineServerStream measures a server stream of 16 messages of
// 1 MiB through the engine per op; BenchmarkDirectServerStream without it.
func BenchmarkEngineServerStream(b *testing.B) {
	backend := startBackend(b, nil)
	e := startEngine(b, Config{}, backend.addr)
	benchServerStream(b, e.addr)
}

func BenchmarkDirectServerStream(b *testing.B) {
	benchServerStream(b, startBackend(b, nil).addr)
}

func benchServerStream(b *testing.B, addr string) {
	const count, size = 16, 1 << 20
	ctx := testContext(b)
	cc := dial(b, addr)
	req := serverStreamRequest(count, size)
	b.SetBytes(count * size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := cc.NewStream(ctx, streamDesc, methodServerStream)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SendMsg(&req); err != nil {
			b.Fatal(err)
		}
		_ = s.CloseSend()
		for range count {
			var msg []byte
			if err := s.RecvMsg(&msg); err != nil {
				b.Fatal(err)
			}
		}
		var end []byte
		if err := s.RecvMsg(&end); err == nil {
			b.Fatal("a message after the last")
		}
	}
}
