package routing

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEjectionGrows ejects the same endpoint again and again: each
// ejection in a row lasts twice the last, up to the maximum; a success
// after it is back starts over.
func TestEjectionGrows(t *testing.T) {
	table := NewTable()
	table.SetPassiveHealth(PassiveHealth{Failures: 2, EjectTime: time.Second, MaxEjectTime: 3 * time.Second}, nil)
	table.Update("svc", SourceStatic, []Endpoint{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}})
	eps, _ := table.Endpoints("svc")
	s := eps[0].State
	unavailable := status.Error(codes.Unavailable, "down")

	var lengths []time.Duration
	for range 4 {
		s.recordResult(unavailable)
		if s.Ejected(time.Now()) {
			t.Fatal("ejected after one failure")
		}
		s.recordResult(unavailable)
		until := time.Unix(0, s.ejectedUntil.Load())
		lengths = append(lengths, time.Until(until).Round(time.Second))
		s.ejectedUntil.Store(0) // as if the time were up
	}
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	for i := range want {
		if lengths[i] != want[i] {
			t.Fatalf("ejection lengths %v, want %v", lengths, want)
		}
	}
	// A success once back resets the series; cancelled calls say nothing.
	s.recordResult(status.Error(codes.Canceled, "client went away"))
	s.recordResult(nil)
	s.recordResult(unavailable)
	s.recordResult(unavailable)
	if got := time.Until(time.Unix(0, s.ejectedUntil.Load())).Round(time.Second); got != time.Second {
		t.Errorf("ejection after a success: %v, want 1s", got)
	}
	// An application error is a success for health.
	s.ejectedUntil.Store(0)
	s.recordResult(unavailable)
	s.recordResult(status.Error(codes.NotFound, "no such user"))
	s.recordResult(unavailable)
	if s.Ejected(time.Now()) {
		t.Error("failures not in a row ejected the endpoint")
	}
}
