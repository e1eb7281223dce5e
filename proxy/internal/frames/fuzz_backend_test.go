package frames

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzBackendFrames plays a broken backend: each input is the sequence of
// frames, well-formed or not, that the backend answers a unary call with
// (headers with any status or none, trailers, DATA with lying message
// prefixes, resets, GOAWAY, settings, garbage) before it closes the
// connection. The engine must not crash, must end the call (with the
// backend's status or one of its own), and must go on serving calls to
// other backends.
func FuzzBackendFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 1, 0, 1, 0, 0})       // headers, a message, trailers: OK
	f.Add([]byte{1, 1, 1})                         // trailers-only UNAVAILABLE
	f.Add([]byte{2, 200, 0, 3, 1})                 // DATA before headers, then a reset
	f.Add([]byte{0, 6, 0, 2, 0, 5, 6, 4, 7, 1, 1}) // headers split, settings, ping, goaway
	f.Add([]byte{8, 30, 1, 2, 3})                  // garbage
	var script atomic.Pointer[[]byte]
	broken := startRawServer(f, func(p *rawPeer, fr http2.Frame) {
		df, ok := fr.(*http2.DataFrame)
		if !ok || !df.StreamEnded() {
			return
		}
		ops := *script.Load()
		playBackendFrames(p, df.StreamID, ops)
		_ = p.conn.Close()
	})
	good := startBackend(f, nil)
	var late lateRouter
	e := startEngine(f, Config{Router: &late}, "")
	brokenB, goodB := dialBackend(e.Engine, broken.addr), dialBackend(e.Engine, good.addr)
	late.set(routerFunc(func(r *Request) (Route, error) {
		if r.Method == brokenMethod {
			return Route{Backend: brokenB}, nil
		}
		return Route{Backend: goodB}, nil
	}))
	cc := dial(f, e.addr)
	f.Fuzz(func(t *testing.T, ops []byte) {
		script.Store(&ops)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, _ = unary(ctx, cc, brokenMethod, []byte("request"))
		if ctx.Err() != nil {
			t.Fatalf("the call did not end within %s of its backend closing", time.Since(start))
		}
		deadline := time.Now().Add(5 * time.Second)
		for e.InFlight() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls still in flight 5 s after the backend closed", e.InFlight())
			}
			time.Sleep(time.Millisecond)
		}
		if resp, err := unary(ctx, cc, methodUnary, []byte("still serving")); err != nil || string(resp) != "still serving" {
			t.Fatalf("a call to another backend: %q, %v", resp, err)
		}
	})
}

// brokenMethod is the method FuzzBackendFrames routes to its broken
// backend.
const brokenMethod = "/test.Broken/Unary"

// playBackendFrames answers stream id with the frames ops describes. Each
// op is a byte choosing the frame, followed by the bytes its fields take;
// a write error ends the play.
func playBackendFrames(p *rawPeer, id uint32, ops []byte) {
	src := fuzzOps(ops)
	next := src.next
	fr := p.w
	fr.AllowIllegalWrites = true
	block := func(fields ...hpack.HeaderField) []byte {
		p.hbuf.Reset()
		for _, f := range fields {
			_ = p.enc.WriteField(f)
		}
		return bytes.Clone(p.hbuf.Bytes())
	}
	statuses := []string{"200", "404", "503", "", "abc"}
	codes := []string{"0", "14", "4", "13", "99", "", "x"}
	for len(src) > 0 {
		var err error
		switch next() % 9 {
		case 0: // response headers, maybe split or with a bad :status
			flags := next()
			var fields []hpack.HeaderField
			if s := statuses[int(next())%len(statuses)]; s != "" {
				fields = append(fields, hpackField(":status", s))
			}
			if flags&1 == 0 {
				fields = append(fields, hpackField("content-type", "application/grpc"))
			}
			b := block(fields...)
			cut := len(b)
			if flags&2 != 0 {
				cut = int(next()) % (len(b) + 1)
			}
			err = p.write(func(w *http2.Framer) error {
				err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:cut], EndHeaders: cut == len(b)})
				if err == nil && cut < len(b) && flags&4 != 0 {
					err = w.WriteContinuation(id, true, b[cut:])
				}
				return err
			})
		case 1: // trailers, or a trailers-only response
			fields := []hpack.HeaderField{hpackField(":status", "200")}
			if next()%2 == 0 {
				fields = fields[:0]
			}
			fields = append(fields, hpackField("grpc-status", codes[int(next())%len(codes)]),
				hpackField("grpc-message", "from the backend"))
			b := block(fields...)
			err = p.write(func(w *http2.Framer) error {
				return w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndHeaders: true, EndStream: true})
			})
		case 2: // DATA: a message, its prefix maybe lying, maybe padded
			size, flags := int(next())<<5, next()
			msg := grpcMessage(bytes.Repeat([]byte{'r'}, size))
			if flags&1 != 0 {
				msg[1] = 0xff // announces far more than comes
			}
			err = p.write(func(w *http2.Framer) error {
				if flags&2 != 0 {
					return w.WriteDataPadded(id, flags&4 != 0, msg, make([]byte, next()))
				}
				return w.WriteData(id, flags&4 != 0, msg)
			})
		case 3:
			err = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(id, http2.ErrCode(next()%14)) })
		case 4: // GOAWAY, with the stream processed or not
			last := id
			if next()%2 == 0 {
				last = 0
			}
			err = p.write(func(w *http2.Framer) error { return w.WriteGoAway(last, http2.ErrCode(next()%14), nil) })
		case 5:
			sid, v := http2.SettingID(next()%8), uint32(next())<<uint(next()%32)
			err = p.write(func(w *http2.Framer) error { return w.WriteSettings(http2.Setting{ID: sid, Val: v}) })
		case 6:
			err = p.write(func(w *http2.Framer) error { return w.WritePing(next()%2 == 0, [8]byte{next()}) })
		case 7: // window update, of the stream or the connection, 0 included
			sid := id
			if next()%2 == 0 {
				sid = 0
			}
			err = p.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(sid, uint32(next())<<uint(next()%24)) })
		case 8: // raw bytes
			n := int(next())
			raw := make([]byte, 0, n)
			for range n {
				raw = append(raw, next())
			}
			_, err = p.conn.Write(raw)
		}
		if err != nil {
			return
		}
	}
}
