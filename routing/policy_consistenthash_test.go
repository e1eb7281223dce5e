package routing

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"
)

const testHashKey = "x-session-id"

// sessionOwners returns the address each of keys calls goes to.
func sessionOwners(ctx context.Context, sel Selector, keys int) []string {
	got := make([]string, keys)
	for i := range got {
		got[i] = sel.Select(pickInfo(ctx, testHashKey, fmt.Sprint("session-", i))).Addr
	}
	return got
}

func TestPolicyConsistentHashSameKeySameEndpoint(t *testing.T) {
	candidates := numberedCandidates(10)
	sel := consistentHash{key: testHashKey}.NewSelector(candidates)
	first := sessionOwners(t.Context(), sel, 1000)
	for range 3 {
		if diff := cmp.Diff(first, sessionOwners(t.Context(), sel, 1000)); diff != "" {
			t.Fatalf("owners changed (-first +again):\n%s", diff)
		}
	}
	// A selector built again, as in another process, agrees.
	rebuilt := consistentHash{key: testHashKey}.NewSelector(numberedCandidates(10))
	if diff := cmp.Diff(first, sessionOwners(t.Context(), rebuilt, 1000)); diff != "" {
		t.Errorf("owners differ in a rebuilt selector (-first +rebuilt):\n%s", diff)
	}
}

// TestPolicyConsistentHashIsStable pins the hashes, which must be the same
// in every process and every version: proxies side by side must agree.
func TestPolicyConsistentHashIsStable(t *testing.T) {
	tests := []struct {
		name string
		hash uint64
		want uint64
	}{
		{name: "empty key value", hash: keyHash([]byte("")), want: 0x86eab5703eeaf22e},
		{name: "key value", hash: keyHash([]byte("session-1")), want: 0x3d8c1aea50d5fdb3},
		{name: "first replica", hash: replicaHash(fnv1a([]byte("10.0.0.1:50051")), 0), want: 0x3034766cd87e7984},
		{name: "last replica", hash: replicaHash(fnv1a([]byte("10.0.0.1:50051")), ringReplicas-1), want: 0x300833ef1be89987},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hash != tt.want {
				t.Errorf("hash = %#x, want %#x", tt.hash, tt.want)
			}
		})
	}
}

func TestPolicyConsistentHashSpreads(t *testing.T) {
	const n, keys = 10, 10_000
	candidates := numberedCandidates(n)
	sel := consistentHash{key: testHashKey}.NewSelector(candidates)
	got := make(map[string]float64)
	for _, addr := range sessionOwners(t.Context(), sel, keys) {
		got[addr] += 1.0 / keys
	}
	want := make(map[string]float64)
	for _, c := range candidates {
		want[c.Addr] = 1.0 / n
	}
	// Each endpoint's share of the ring varies by about 10% of 1/n (one
	// standard deviation, with ringReplicas points each): allow 50%.
	if diff := cmp.Diff(want, got, approxShares(0.5/n)); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
}

func TestPolicyConsistentHashRemapsFewKeys(t *testing.T) {
	const n, keys = 10, 10_000
	all := numberedCandidates(n + 1)
	tests := []struct {
		name          string
		before, after []Candidate
	}{
		{name: "one of n removed", before: all[:n], after: append(all[:3:3], all[4:n]...)},
		{name: "one added to n", before: all[:n], after: all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sessionOwners(t.Context(), consistentHash{key: testHashKey}.NewSelector(tt.before), keys)
			after := sessionOwners(t.Context(), consistentHash{key: testHashKey}.NewSelector(tt.after), keys)
			moved := 0
			for i := range before {
				if before[i] == after[i] {
					continue
				}
				moved++
				// Only keys of the removed endpoint move, and only to the
				// added one.
				if hasAddr(tt.after, before[i]) && hasAddr(tt.before, after[i]) {
					t.Errorf("session-%d moved from %s to %s, both in both sets", i, before[i], after[i])
				}
			}
			fraction, want := float64(moved)/keys, 1.0/float64(max(len(tt.before), len(tt.after)))
			if fraction < want/2 || fraction > want*1.5 {
				t.Errorf("%.3f of the keys moved, want about %.3f", fraction, want)
			}
		})
	}
}

// hasAddr reports whether candidates has an endpoint at addr.
func hasAddr(candidates []Candidate, addr string) bool {
	for _, c := range candidates {
		if c.Addr == addr {
			return true
		}
	}
	return false
}

func TestPolicyConsistentHashWithoutKey(t *testing.T) {
	tests := []struct {
		name    string
		hashKey string
		md      []string
	}{
		{name: "no metadata"},
		{name: "other metadata", hashKey: testHashKey, md: []string{"x-other", "1"}},
		{name: "empty value", hashKey: testHashKey, md: []string{testHashKey, ""}},
		{name: "no hash key configured", md: []string{testHashKey, "session-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := numberedCandidates(4)
			sel := consistentHash{key: tt.hashKey}.NewSelector(candidates)
			got := selectShares(sel, candidates, pickInfo(t.Context(), tt.md...), 10_000, false)
			want := make(map[string]float64)
			for _, c := range candidates {
				want[c.Addr] = 0.25
			}
			if diff := cmp.Diff(want, got, approxShares(0.03)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyConsistentHashReadsKey(t *testing.T) {
	candidates := numberedCandidates(10)
	sel := consistentHash{key: "X-Session-ID"}.NewSelector(candidates)
	outgoing := sel.Select(pickInfo(t.Context(), testHashKey, "session-7"))
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{name: "incoming metadata", ctx: metadata.NewIncomingContext(t.Context(), metadata.Pairs(testHashKey, "session-7"))},
		{name: "the first of several values", ctx: metadata.NewOutgoingContext(t.Context(), metadata.Pairs(testHashKey, "session-7", testHashKey, "session-8"))},
		{name: "outgoing before incoming", ctx: metadata.NewIncomingContext(
			metadata.NewOutgoingContext(t.Context(), metadata.Pairs(testHashKey, "session-7")),
			metadata.Pairs(testHashKey, "session-8"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				if got := sel.Select(pickInfo(tt.ctx)); got != outgoing {
					t.Fatalf("Select = %s, want %s as for the key in outgoing metadata", got.Addr, outgoing.Addr)
				}
			}
		})
	}
}
