package syncbuf

import (
	"fmt"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestBuffer: lines written from several goroutines while another reads
// all arrive whole.
func TestBuffer(t *testing.T) {
	var b Buffer
	if b.Lines() != nil || b.Count("x") != 0 {
		t.Fatal("an empty buffer has lines")
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				fmt.Fprintf(&b, "writer %d line %d\n", g, i)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = b.Count("writer")
		}
	})
	wg.Wait()
	lines := b.Lines()
	if len(lines) != 400 || b.Count("writer 3 line") != 100 {
		t.Fatalf("%d lines, %d of writer 3; want 400 and 100", len(lines), b.Count("writer 3 line"))
	}
	if lines[len(lines)-1] == "" {
		t.Error("Lines kept the empty string after the last newline")
	}
}
