package frames

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// grpcMessage frames payload as a gRPC length-prefixed message.
func grpcMessage(payload []byte) []byte {
	b := []byte{0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// grpcPrefix is a message prefix announcing length bytes.
func grpcPrefix(length uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0}, length)
}

// scanSplit feeds stream to a scanner in chunks cut at cuts, and returns
// the scanner and the first oversized length it reported.
func scanSplit(stream []byte, cuts []int, limit uint32) (messageScanner, uint32) {
	var s messageScanner
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = min(max(c, prev), len(stream))
		if n := s.scan(stream[prev:c], limit); n > 0 {
			return s, n
		}
		prev = c
	}
	return s, 0
}

func TestMessageScanner(t *testing.T) {
	three := append(append(grpcMessage([]byte("hello")), grpcMessage(nil)...), grpcMessage(make([]byte, 300))...)
	tests := []struct {
		name      string
		stream    []byte
		cuts      []int
		limit     uint32
		messages  int64
		oversized uint32
	}{
		{name: "one frame", stream: three, limit: 1000, messages: 3},
		{name: "every byte apart", stream: three, cuts: seq(len(three)), limit: 1000, messages: 3},
		{name: "cut inside a prefix", stream: three, cuts: []int{2, 12, 13}, limit: 1000, messages: 3},
		{name: "cut at message ends", stream: three, cuts: []int{10, 15}, limit: 1000, messages: 3},
		{name: "empty frames", stream: three, cuts: []int{0, 0, 5, 5, 5}, limit: 1000, messages: 3},
		{name: "at the limit", stream: grpcMessage(make([]byte, 300)), limit: 300, messages: 1},
		{name: "over the limit", stream: three, limit: 299, messages: 2, oversized: 300},
		{name: "over the limit, prefix split", stream: three, cuts: []int{17, 19}, limit: 10, messages: 2, oversized: 300},
		{name: "first oversized reported", stream: append(grpcPrefix(7<<20), grpcPrefix(9<<20)...), limit: 1 << 20, oversized: 7 << 20},
		{name: "huge length", stream: grpcPrefix(1<<32 - 1), limit: 4 << 20, oversized: 1<<32 - 1},
		{name: "half a prefix", stream: []byte{0, 0}, limit: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, n := scanSplit(tt.stream, tt.cuts, tt.limit)
			if n != tt.oversized {
				t.Errorf("oversized length = %d, want %d", n, tt.oversized)
			}
			if s.messages != tt.messages {
				t.Errorf("messages = %d, want %d", s.messages, tt.messages)
			}
			if tt.oversized == 0 && s.bytes != int64(len(tt.stream)) {
				t.Errorf("bytes = %d, want %d", s.bytes, len(tt.stream))
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// FuzzMessageScanner checks that however a stream of messages is split
// into frames, the scanner counts the same messages and bytes, and
// reports the same first oversized message, as reading it whole.
func FuzzMessageScanner(f *testing.F) {
	f.Add([]byte("hello"), []byte{0, 3, 255}, uint64(1), uint16(100))
	f.Add([]byte{}, []byte{}, uint64(7), uint16(0))
	f.Add(make([]byte, 70), []byte{1, 1, 1, 1, 1}, uint64(42), uint16(16))
	f.Fuzz(func(t *testing.T, data, cutBytes []byte, seed uint64, limit16 uint16) {
		// data's bytes become message sizes (0–255); seed fills them.
		rng := rand.New(rand.NewPCG(seed, 1))
		var stream []byte
		var want int64
		var wantOversized uint32
		limit := uint32(limit16)
		for _, size := range data {
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(rng.Uint32())
			}
			stream = append(stream, grpcMessage(payload)...)
			if wantOversized == 0 {
				if uint32(size) > limit {
					wantOversized = uint32(size)
				} else {
					want++
				}
			}
		}
		var cuts []int
		pos := 0
		for _, c := range cutBytes {
			pos += int(c)
			cuts = append(cuts, pos)
		}
		s, n := scanSplit(stream, cuts, limit)
		if n != wantOversized {
			t.Fatalf("oversized = %d, want %d", n, wantOversized)
		}
		if s.messages != want {
			t.Fatalf("messages = %d, want %d", s.messages, want)
		}
		if wantOversized == 0 && s.bytes != int64(len(stream)) {
			t.Fatalf("bytes = %d, want %d", s.bytes, len(stream))
		}
		if wantOversized == 0 && (s.remaining != 0 || s.prefixLen != 0) {
			t.Fatalf("scanner mid-message after whole messages: remaining %d, prefixLen %d", s.remaining, s.prefixLen)
		}
	})
}
