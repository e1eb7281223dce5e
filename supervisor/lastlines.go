package supervisor

import (
	"bytes"
	"sync"
)

// Sizes of the output kept in memory per instance.
const (
	lastLinesKept = 20
	// maxLineLength cuts longer lines (a binary blob, a minified JSON):
	// they are kept as their first maxLineLength bytes.
	maxLineLength = 1024
)

// lineRing keeps the last lines written to it, for the status page and the
// log record of a crash. It is an io.Writer; a line is complete at its
// '\n', and the unfinished one is shown too.
type lineRing struct {
	mu      sync.Mutex
	lines   []string // ring of up to size lines; next is the oldest once full
	next    int
	size    int
	partial []byte
	// cut is set while the rest of an overlong line is skipped.
	cut bool
}

func newLineRing(size int) *lineRing { return &lineRing{size: size} }

// Write records the lines in p. It never fails.
func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		line, rest, complete := bytes.Cut(p, []byte{'\n'})
		r.appendPartial(line)
		if !complete {
			break
		}
		r.push(string(bytes.TrimSuffix(r.partial, []byte{'\r'})))
		r.partial, r.cut = r.partial[:0], false
		p = rest
	}
	return n, nil
}

func (r *lineRing) appendPartial(b []byte) {
	if r.cut {
		return
	}
	if room := maxLineLength - len(r.partial); len(b) > room {
		b, r.cut = b[:room], true
	}
	r.partial = append(r.partial, b...)
}

func (r *lineRing) push(line string) {
	if len(r.lines) < r.size {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % r.size
}

// Lines returns the kept lines, oldest first, then the unfinished one.
func (r *lineRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.lines)+1)
	out = append(out, r.lines[r.next:]...)
	out = append(out, r.lines[:r.next]...)
	if len(r.partial) > 0 {
		out = append(out, string(r.partial))
	}
	return out
}

// reset forgets every line.
func (r *lineRing) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines, r.next, r.partial, r.cut = r.lines[:0], 0, r.partial[:0], false
}
