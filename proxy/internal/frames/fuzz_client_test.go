package frames

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzClientFrames plays a hostile or broken client: each input is a
// sequence of HTTP/2 frames, well-formed or not, in any order (HEADERS of
// real calls and of garbage, CONTINUATION, DATA with and without padding,
// window updates, resets, pings, settings, priority, GOAWAY, raw bytes),
// written to the engine on one connection, which is then closed. The
// engine must not crash, must end every call the connection opened, and
// must go on serving other clients.
func FuzzClientFrames(f *testing.F) {
	f.Add([]byte{0, 1, 3, 2, 1, 5, 10})                          // a unary call, whole
	f.Add([]byte{0, 0, 2, 2, 0, 200, 3, 0, 0, 4, 0, 8})          // headers, data, window update, reset
	f.Add([]byte{0, 4, 0, 1, 0, 7, 2, 1, 9, 6, 5, 1, 1})         // a header block cut by DATA
	f.Add([]byte{6, 4, 0, 6, 3, 200, 0, 1, 3, 5, 0, 7, 7, 8, 0}) // settings, pings, priority, goaway
	f.Add([]byte{9, 40, 0, 1, 1, 2, 1, 255, 255, 3, 1, 0})       // garbage, then frames
	backend := startBackend(f, nil)
	e := startEngine(f, Config{MaxConcurrentStreams: 16}, backend.addr)
	good := dial(f, e.addr)
	f.Fuzz(func(t *testing.T, ops []byte) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, conn)
		}()
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		playFrames(conn, ops)
		_ = conn.Close()
		<-drained
		deadline := time.Now().Add(5 * time.Second)
		for e.InFlight() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls still in flight 5 s after the client's connection closed", e.InFlight())
			}
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if resp, err := unary(ctx, good, methodUnary, []byte("still serving")); err != nil || string(resp) != "still serving" {
			t.Fatalf("another client's call: %q, %v", resp, err)
		}
	})
}

// playFrames writes the frames ops describes to conn, after the client
// preface and SETTINGS. Each op is a byte choosing the frame, followed by
// the bytes its fields take; a write error ends the play (the engine has
// closed the connection).
func playFrames(conn net.Conn, ops []byte) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	fr := http2.NewFramer(conn, nil)
	fr.AllowIllegalWrites = true
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		return
	}
	if err := fr.WriteSettings(); err != nil {
		return
	}
	src := fuzzOps(ops)
	next := src.next
	// Streams: mostly odd and small, sometimes 0 or even (protocol errors).
	stream := func() uint32 {
		b := next()
		switch b % 16 {
		case 14:
			return 0
		case 15:
			return uint32(b)&^1 + 2
		}
		return uint32(b%14)*2 + 1
	}
	methods := []string{methodUnary, methodBidi, methodClientStream, "/test.Echo/Missing", "not-a-path"}
	for len(src) > 0 {
		var err error
		switch next() % 10 {
		case 0: // HEADERS of a call, maybe split, padded or with priority
			id, flags := stream(), next()
			hbuf.Reset()
			fields := grpcRequestHeaders(methods[int(next())%len(methods)])
			if flags&64 != 0 {
				fields = fields[2:] // pseudo-headers missing
			}
			for _, f := range fields {
				_ = enc.WriteField(f)
			}
			block := hbuf.Bytes()
			cut := len(block)
			if flags&1 != 0 {
				cut = int(next()) % (len(block) + 1)
			}
			p := http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:cut],
				EndStream: flags&2 != 0, EndHeaders: cut == len(block)}
			if flags&4 != 0 {
				p.PadLength = next()
			}
			if flags&8 != 0 {
				p.Priority = http2.PriorityParam{StreamDep: uint32(next()), Weight: next(), Exclusive: flags&16 != 0}
			}
			if err = fr.WriteHeaders(p); err == nil && cut < len(block) && flags&32 != 0 {
				err = fr.WriteContinuation(id, true, block[cut:])
			}
		case 1: // CONTINUATION, of a block or of nothing
			id := stream()
			hbuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: "x-more", Value: "value"})
			err = fr.WriteContinuation(id, next()%2 == 0, hbuf.Bytes())
		case 2: // DATA: a gRPC message of a given size, maybe padded
			id, size, flags := stream(), int(next())<<6, next()
			msg := grpcMessage(bytes.Repeat([]byte{'d'}, size))
			if flags&1 != 0 {
				msg = msg[:len(msg)/2] // a message cut short
			}
			if flags&2 != 0 {
				err = fr.WriteDataPadded(id, flags&4 != 0, msg, make([]byte, next()))
			} else {
				err = fr.WriteData(id, flags&4 != 0, msg)
			}
		case 3: // WINDOW_UPDATE, 0 included (a protocol error)
			id := stream()
			err = fr.WriteWindowUpdate(id, uint32(next())<<uint(next()%24))
		case 4:
			err = fr.WriteRSTStream(stream(), http2.ErrCode(next()%14))
		case 5:
			err = fr.WritePing(next()%2 == 0, [8]byte{next()})
		case 6: // SETTINGS, valid values or not
			id, v := http2.SettingID(next()%8), uint32(next())<<uint(next()%32)
			err = fr.WriteSettings(http2.Setting{ID: id, Val: v})
		case 7:
			err = fr.WritePriority(stream(), http2.PriorityParam{StreamDep: stream(), Weight: next()})
		case 8:
			err = fr.WriteGoAway(stream(), http2.ErrCode(next()%14), nil)
		case 9: // raw bytes: a frame header of any type and length, or garbage
			n := int(next())
			raw := make([]byte, 0, n)
			for range n {
				raw = append(raw, next())
			}
			if len(raw) >= 9 {
				binary.BigEndian.PutUint16(raw[1:], uint16(len(raw)-9)) // length within what follows, mostly
			}
			_, err = conn.Write(raw)
		}
		if err != nil {
			return
		}
	}
}

// fuzzOps hands out a fuzz input's bytes one at a time, then zeros.
type fuzzOps []byte

func (o *fuzzOps) next() byte {
	if len(*o) == 0 {
		return 0
	}
	b := (*o)[0]
	*o = (*o)[1:]
	return b
}
