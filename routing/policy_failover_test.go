package routing

import (
	"testing"
)

func TestPolicyFailover(t *testing.T) {
	prio := func(p string) map[string]string { return map[string]string{priorityKey: p} }
	tests := []struct {
		name string
		eps  []testEndpoint
		want string
	}{{
		name: "lowest priority first",
		eps:  []testEndpoint{{addr: "a:1", metadata: prio("2")}, {addr: "b:1", metadata: prio("1")}, {addr: "c:1", metadata: prio("3")}},
		want: "b:1",
	}, {
		name: "numbered before unnumbered",
		eps:  []testEndpoint{{addr: "a:1"}, {addr: "b:1", metadata: prio("5")}},
		want: "b:1",
	}, {
		name: "negative priorities come first",
		eps:  []testEndpoint{{addr: "a:1", metadata: prio("0")}, {addr: "b:1", metadata: prio("-1")}},
		want: "b:1",
	}, {
		name: "ties by address",
		eps:  []testEndpoint{{addr: "b:1", metadata: prio("1")}, {addr: "a:1", metadata: prio("1")}, {addr: "c:1", metadata: prio("2")}},
		want: "a:1",
	}, {
		name: "no priorities: by address",
		eps:  []testEndpoint{{addr: "c:1"}, {addr: "b:1"}, {addr: "a:1"}},
		want: "a:1",
	}, {
		name: "a priority that is not an integer counts as none",
		eps:  []testEndpoint{{addr: "a:1", metadata: prio("high")}, {addr: "b:1", metadata: prio("99999999999999999999")}, {addr: "c:1"}},
		want: "a:1",
	}, {
		name: "the first gone, the next",
		eps:  []testEndpoint{{addr: "a:1", metadata: prio("2")}, {addr: "c:1", metadata: prio("3")}},
		want: "a:1",
	}, {
		name: "only unnumbered left",
		eps:  []testEndpoint{{addr: "d:1"}, {addr: "e:1"}},
		want: "d:1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			sel := failover{}.NewSelector(candidates)
			for range 100 {
				if got := sel.Select(pickInfo(t.Context())).Addr; got != tt.want {
					t.Fatalf("Select = %s, want %s", got, tt.want)
				}
			}
		})
	}
}
