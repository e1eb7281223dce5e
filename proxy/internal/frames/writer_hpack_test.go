package frames

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// decodeBlocks reads the HEADERS frames in b with one decoder, as the peer
// would, and returns each block's fields.
func decodeBlocks(t *testing.T, b []byte) [][]hpack.HeaderField {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var blocks [][]hpack.HeaderField
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if len(blocks) == 0 || !strings.Contains(err.Error(), "EOF") {
				t.Fatalf("after %d blocks: %v", len(blocks), err)
			}
			return blocks
		}
		blocks = append(blocks, f.(*http2.MetaHeadersFrame).Fields)
	}
}

func TestHeadersVaryingFieldsNeverIndexed(t *testing.T) {
	w := newWriter(nil)
	long := strings.Repeat("AQID", 100) // a 400-byte value: a multi-byte length
	var want [][]hpack.HeaderField
	for i, timeout := range []string{"99m", "98m", "97m"} {
		fields := []hpack.HeaderField{
			{Name: ":method", Value: "POST"},
			{Name: ":path", Value: "/quaestor.example.v1.Echo/Unary"},
			{Name: "grpc-timeout", Value: timeout},
			{Name: "x-trace-bin", Value: long[:100*i+1]},
			{Name: "content-type", Value: "application/grpc"},
		}
		w.headersLocked(uint32(2*i+1), fields, false)
		for j := range fields {
			fields[j].Sensitive = varies(fields[j].Name)
		}
		want = append(want, fields)
	}
	got := decodeBlocks(t, w.buf)
	if len(got) != len(want) {
		t.Fatalf("decoded %d blocks, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("block %d: decoded %v, want %v", i, got[i], want[i])
		}
	}
}

// A peer's smaller SETTINGS_HEADER_TABLE_SIZE leaves a table size update
// due, which must open the next block even when that block starts with a
// field written without the encoder.
func TestHeadersTableSizeUpdateFirst(t *testing.T) {
	w := newWriter(nil)
	first := []hpack.HeaderField{{Name: "x-app", Value: "indexed"}, {Name: "grpc-timeout", Value: "5S"}}
	w.headersLocked(1, first, false)
	w.peerTableSizeLocked(0)
	second := []hpack.HeaderField{{Name: "grpc-timeout", Value: "4S"}, {Name: "x-app", Value: "indexed"}}
	start := len(w.buf)
	w.headersLocked(3, second, false)
	if block := w.buf[start+frameHeaderLen:]; block[0]&0xe0 != 0x20 {
		t.Fatalf("second block starts with %#x, want a table size update (001xxxxx)", block[0])
	}
	got := decodeBlocks(t, w.buf)
	want := []hpack.HeaderField{{Name: "grpc-timeout", Value: "4S", Sensitive: true}, {Name: "x-app", Value: "indexed"}}
	if len(got) != 2 || !slices.Equal(got[1], want) {
		t.Fatalf("decoded %v, want the second block %v", got, want)
	}
	// The update went out once: the next block opens with the field.
	start = len(w.buf)
	w.headersLocked(5, second, false)
	if b := w.buf[start+frameHeaderLen]; b != 0x10 {
		t.Fatalf("third block starts with %#x, want a literal never indexed (0x10)", b)
	}
}

func TestAppendHpackInt(t *testing.T) {
	// RFC 7541 C.1: 10 and 1337 with a 5-bit prefix, 42 with 8 bits.
	for _, c := range []struct {
		n    uint
		v    uint64
		want []byte
	}{
		{5, 10, []byte{10}},
		{5, 1337, []byte{31, 154, 10}},
		{8, 42, []byte{42}},
		{7, 126, []byte{126}},
		{7, 127, []byte{127, 0}},
	} {
		if got := appendHpackInt(nil, c.n, c.v); !bytes.Equal(got, c.want) {
			t.Errorf("appendHpackInt(%d, %d) = %v, want %v", c.n, c.v, got, c.want)
		}
	}
}

// BenchmarkHeadersVarying: a response's trailers with a per-call load
// report, as a backend with the loadreport library sends them.
func BenchmarkHeadersVarying(b *testing.B) {
	w := newWriter(nil)
	trailers := []hpack.HeaderField{
		{Name: "grpc-status", Value: "0"},
		{Name: "endpoint-load-metrics-bin", Value: "CQAAAAAAAOA/EQAAAAAAANA/MQAAAAAASJNAQhkKEGN1cnJlbnRfcmVxdWVzdHMRAAAAAAAAHEBCGQoQcmVxdWVzdF9jYXBhY2l0eREAAAAAAABQQA"},
	}
	b.ReportAllocs()
	for b.Loop() {
		w.headersLocked(1, trailers, true)
		w.buf = w.buf[:0]
	}
}
