package supervisor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLineRing(t *testing.T) {
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprintf("line %d\n", i)
	}
	tests := []struct {
		name   string
		size   int
		writes []string
		want   []string
	}{
		{name: "empty", size: 3, want: []string{}},
		{name: "whole lines", size: 3, writes: []string{"a\nb\n"}, want: []string{"a", "b"}},
		{name: "a line across writes", size: 3, writes: []string{"he", "llo\nwor", "ld\n"}, want: []string{"hello", "world"}},
		{name: "the unfinished line is shown", size: 3, writes: []string{"a\nhalf"}, want: []string{"a", "half"}},
		{name: "CRLF", size: 3, writes: []string{"a\r\nb\r\n"}, want: []string{"a", "b"}},
		{name: "empty lines kept", size: 3, writes: []string{"a\n\nb\n"}, want: []string{"a", "", "b"}},
		{name: "only the last ones", size: 3, writes: []string{"1\n2\n3\n4\n5\n"}, want: []string{"3", "4", "5"}},
		{name: "wraps many times", size: 20, writes: many, want: func() []string {
			var want []string
			for _, line := range many[5:] {
				want = append(want, strings.TrimSuffix(line, "\n"))
			}
			return want
		}()},
		{name: "long lines cut", size: 2, writes: []string{strings.Repeat("x", maxLineLength+10) + "\nshort\n"},
			want: []string{strings.Repeat("x", maxLineLength), "short"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLineRing(tt.size)
			for _, w := range tt.writes {
				if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if diff := cmp.Diff(tt.want, r.Lines()); diff != "" {
				t.Errorf("Lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLineRingReset(t *testing.T) {
	r := newLineRing(3)
	r.Write([]byte("1\n2\n3\n4\npartial"))
	r.reset()
	r.Write([]byte("new\n"))
	if diff := cmp.Diff([]string{"new"}, r.Lines()); diff != "" {
		t.Errorf("Lines after reset (-want +got):\n%s", diff)
	}
}
