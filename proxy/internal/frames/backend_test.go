package frames

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// failoverRouter sends calls to the first of its backends that the call
// has not tried and that is not failing, as the proxy's routing does.
type failoverRouter struct{ backends []*Backend }

func (r *failoverRouter) Route(req *Request) (Route, error) {
	now := time.Now()
	for _, b := range r.backends {
		if !slices.Contains(req.Tried, b) && !b.Failing(now) {
			return Route{Backend: b}, nil
		}
	}
	return Route{}, status.Error(codes.Unavailable, "no backend left")
}

// TestBackendGoAwayRetried stops a backend gracefully (GOAWAY) under load:
// calls it did not take are sent again to the other backend, and none
// fails.
func TestBackendGoAwayRetried(t *testing.T) {
	ctx := testContext(t)
	first, second := startBackend(t, nil), startBackend(t, nil)
	var late lateRouter
	e := startEngine(t, Config{Router: &late}, "")
	late.set(&failoverRouter{backends: []*Backend{dialBackend(e.Engine, first.addr), dialBackend(e.Engine, second.addr)}})
	cc := dial(t, e.addr)

	const workers, maxCalls = 16, 3000
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range uint32(workers) {
		wg.Go(func() {
			for i := uint32(0); i < maxCalls; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := patterned(w*maxCalls+i, 200)
				resp, err := unary(ctx, cc, methodUnary, req)
				if err == nil && !bytes.Equal(resp, req) {
					err = fmt.Errorf("response differs")
				}
				if err != nil {
					if failed.Add(1) == 1 {
						errs <- fmt.Errorf("worker %d call %d: %v", w, i, err)
					}
					continue
				}
				calls.Add(1)
			}
		})
	}
	testwait.For(ctx, t, "calls under way", func() bool { return calls.Load() >= 200 })
	first.srv.GracefulStop()
	after := calls.Load()
	testwait.For(ctx, t, "calls after the GOAWAY", func() bool { return calls.Load() >= after+500 })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d calls failed", n, n+calls.Load())
	}
}

// TestBackendNotHTTP2 points the engine at a listener that accepts and
// never speaks: calls fail once DialTimeout is over, they do not hang.
func TestBackendNotHTTP2(t *testing.T) {
	ctx := testContext(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepted []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = lis.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range accepted {
			_ = c.Close()
		}
		mu.Unlock()
	})
	e := startEngine(t, Config{DialTimeout: 200 * time.Millisecond}, lis.Addr().String())
	cc := dial(t, e.addr)
	_, err = unary(ctx, cc, methodUnary, []byte("x"))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), lis.Addr().String()) || !strings.Contains(st.Message(), "SETTINGS") {
		t.Fatalf("status %v, want UNAVAILABLE naming %s and the missing SETTINGS", st, lis.Addr())
	}
}

// TestBackendResetCodes has a raw backend reset each call's stream with
// the code its path names, before and after response headers: the client
// sees the status gRPC maps the code to.
func TestBackendResetCodes(t *testing.T) {
	ctx := testContext(t)
	var refusedEarly, refusedLate atomic.Int64
	b := startRawServer(t, func(p *rawPeer, f http2.Frame) {
		hf, ok := f.(*http2.MetaHeadersFrame)
		if !ok || fieldValue(hf.Fields, ":path") == "" {
			return
		}
		// /reset.<n>/<when>: reset with code n, "early" (no headers) or
		// "late" (after response headers).
		path := strings.TrimPrefix(fieldValue(hf.Fields, ":path"), "/reset.")
		num, when, _ := strings.Cut(path, "/")
		n, _ := strconv.Atoi(num)
		if http2.ErrCode(n) == http2.ErrCodeRefusedStream {
			if when == "late" {
				refusedLate.Add(1)
			} else {
				refusedEarly.Add(1)
			}
		}
		if when == "late" {
			_ = p.responseHeaders(hf.StreamID)
		}
		_ = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(hf.StreamID, http2.ErrCode(n)) })
	})
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	for _, tt := range resetCodes {
		for _, when := range []string{"early", "late"} {
			t.Run(tt.code.String()+"/"+when, func(t *testing.T) {
				_, err := unary(ctx, cc, fmt.Sprintf("/reset.%d/%s", tt.code, when), []byte("x"))
				st := status.Convert(err)
				if st.Code() != tt.want || !strings.Contains(st.Message(), tt.code.String()) {
					t.Errorf("status %v, want %v naming %v", st, tt.want, tt.code)
				}
			})
		}
	}
	// REFUSED_STREAM before headers means the backend did not process
	// the call: it is tried again (up to the attempt limit); after
	// headers it is not.
	if n := refusedEarly.Load(); n < 2 || n > maxAttempts+1 {
		t.Errorf("backend saw %d attempts of a call refused before headers, want 2 to %d", n, maxAttempts+1)
	}
	if n := refusedLate.Load(); n != 1 {
		t.Errorf("backend saw %d attempts of a call refused after headers, want 1", n)
	}
	testwait.For(ctx, t, "no call in flight", func() bool { return e.InFlight() == 0 })
}

// TestBackendLostMidCall: the backend's connection ends while a call
// streams: the client gets UNAVAILABLE naming the backend, after the
// messages that came before.
func TestBackendLostMidCall(t *testing.T) {
	ctx := testContext(t)
	sentOne := make(chan struct{})
	b := startBackend(t, func(_ any, ss grpc.ServerStream) error {
		msg := []byte("first")
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
		close(sentOne)
		<-ss.Context().Done()
		return nil
	})
	e := startEngine(t, Config{}, b.addr)
	s, err := dial(t, e.addr).NewStream(ctx, streamDesc, methodBidi)
	if err != nil {
		t.Fatal(err)
	}
	var msg []byte
	if err := s.RecvMsg(&msg); err != nil || string(msg) != "first" {
		t.Fatalf("first message %q, %v", msg, err)
	}
	<-sentOne
	b.srv.Stop()
	err = s.RecvMsg(&msg)
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), b.addr) {
		t.Fatalf("after the backend went: %v, want UNAVAILABLE naming %s", st, b.addr)
	}
	testwait.For(ctx, t, "no call in flight", func() bool { return e.InFlight() == 0 })
}

// TestBackendRemoved: RemoveBackend lets the calls on the backend end;
// new calls to it fail.
func TestBackendRemoved(t *testing.T) {
	ctx := testContext(t)
	b := startBackend(t, nil)
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	s, err := cc.NewStream(ctx, streamDesc, methodBidi)
	if err != nil {
		t.Fatal(err)
	}
	ping := []byte("before")
	if err := s.SendMsg(&ping); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(&ping); err != nil {
		t.Fatal(err)
	}
	e.RemoveBackend(b.addr)
	if e.LookupBackend(b.addr) != nil {
		t.Error("LookupBackend finds a removed backend")
	}
	_, err = unary(ctx, cc, methodUnary, []byte("x"))
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "removed") {
		t.Errorf("a call to the removed backend: %v, want UNAVAILABLE: removed", st)
	}
	pong := []byte("after")
	if err := s.SendMsg(&pong); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(&pong); err != nil || string(pong) != "after" {
		t.Fatalf("the call open on the removed backend: %q, %v", pong, err)
	}
	_ = s.CloseSend()
	if err := s.RecvMsg(&pong); !errors.Is(err, io.EOF) {
		t.Fatalf("the call's end: %v", err)
	}
	testwait.For(ctx, t, "no call in flight", func() bool { return e.InFlight() == 0 })
}
