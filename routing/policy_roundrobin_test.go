package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyRoundRobin(t *testing.T) {
	candidates := numberedCandidates(3)
	sel := roundRobin{}.NewSelector(candidates)

	first := sel.Select(pickInfo(t.Context()))
	var got []string
	for range 6 {
		got = append(got, sel.Select(pickInfo(t.Context())).Addr)
	}
	// The start is random; the order after it is the candidates'.
	var want []string
	start := containsIndex(candidates, first)
	for i := range 6 {
		want = append(want, candidates[(start+1+i)%3].Addr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}

	gotShares := selectShares(sel, candidates, pickInfo(t.Context()), 9_999, false)
	wantShares := map[string]float64{candidates[0].Addr: 1.0 / 3, candidates[1].Addr: 1.0 / 3, candidates[2].Addr: 1.0 / 3}
	if diff := cmp.Diff(wantShares, gotShares, approxShares(1e-9)); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
}

// containsIndex returns the index of c in candidates, or -1.
func containsIndex(candidates []Candidate, c *Candidate) int {
	for i := range candidates {
		if &candidates[i] == c {
			return i
		}
	}
	return -1
}
