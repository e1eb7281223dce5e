//go:build linux

package main

import (
	"encoding/csv"
	"os"
	"strconv"
	"sync"
	"time"
)

// maxEvents bounds the event log; later events are only counted.
const maxEvents = 20000

// event is one churn action or one failed call, for events.csv: lining
// failures up with the churn shows which action caused them.
type event struct {
	at     time.Time
	kind   string // "churn", "unary" or "stream"
	what   string // the action, or the status code
	detail string // the backend, or the error
}

// eventLog collects events from the churn and the load.
type eventLog struct {
	mu      sync.Mutex
	events  []event
	dropped int
}

func (l *eventLog) add(kind, what, detail string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) >= maxEvents {
		l.dropped++
		return
	}
	l.events = append(l.events, event{at: now, kind: kind, what: what, detail: detail})
}

// write writes the events, in order, with their time since start.
func (l *eventLog) write(path string, start time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"elapsed_s", "kind", "what", "detail"})
	for _, e := range l.events {
		_ = w.Write([]string{strconv.FormatFloat(e.at.Sub(start).Seconds(), 'f', 3, 64), e.kind, e.what, e.detail})
	}
	if l.dropped > 0 {
		_ = w.Write([]string{"", "dropped", strconv.Itoa(l.dropped), "events past the first " + strconv.Itoa(maxEvents)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
