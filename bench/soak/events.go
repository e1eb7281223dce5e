//go:build linux

package main

import (
	"encoding/csv"
	"os"
	"slices"
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

func (l *eventLog) add(kind, what, detail string) { l.addAt(time.Now(), kind, what, detail) }

// addAt adds an event that happened at now; the churn logs an action at
// its start, as a kill takes a moment.
func (l *eventLog) addAt(now time.Time, kind, what, detail string) {
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
	for _, e := range l.inOrder() {
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

// inOrder returns the events sorted by time. Called with mu held.
func (l *eventLog) inOrder() []event {
	return slices.SortedStableFunc(slices.Values(l.events), func(a, b event) int { return a.at.Compare(b.at) })
}

// causeNone is the cause of a failure no churn action preceded closely.
const causeNone = "no churn action just before"

// attribute counts the failed calls by the churn action that most
// recently preceded each, within window (a call's deadline and some
// slack), and by kind (unary, stream): causes[action][kind].
func (l *eventLog) attribute(window time.Duration) map[string]map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	causes := make(map[string]map[string]int)
	var last *event
	events := l.inOrder()
	for i := range events {
		e := &events[i]
		switch {
		case e.kind == "churn" && e.what != "serving again" && e.what != "started" && e.what != actionSkipped:
			last = e
		case e.kind == "unary" || e.kind == "stream":
			cause := causeNone
			if last != nil && e.at.Sub(last.at) <= window {
				cause = last.what
			}
			if causes[cause] == nil {
				causes[cause] = make(map[string]int)
			}
			causes[cause][e.kind]++
		}
	}
	return causes
}
