package registry

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/quaestor-go/quaestor/routing"
)

// BenchmarkPutToRoutable measures the time from an etcd put of a new
// instance to its arrival in the routing table, through a real embedded
// etcd, the watch and the discovery goroutine.
func BenchmarkPutToRoutable(b *testing.B) {
	etcd := startEtcd(b)
	table := routing.NewTable()
	disc, err := StartDiscovery(DiscoveryOptions{Client: etcd.client, Table: table, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer disc.Close()
	ctx := b.Context()
	if err := disc.WaitSynced(ctx); err != nil {
		b.Fatal(err)
	}
	changed, cancel := table.Subscribe(echoService)
	defer cancel()
	<-changed
	prefix := ServicePrefix(DefaultPrefix, DefaultScope, echoService)
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		value := fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d"}`, 1024+i%60000)
		start := time.Now()
		if _, err := etcd.client.Put(ctx, fmt.Sprintf("%s%d", prefix, i), value); err != nil {
			b.Fatal(err)
		}
		for {
			<-changed
			if eps, _ := table.Endpoints(echoService); len(eps) == i+1 {
				break
			}
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/put-to-routable")
}

// BenchmarkWatchEvent measures what one watch event (a new instance)
// costs discovery and the table when the service already has n instances:
// decoding, the table update, and the resolver's read of the new list.
func BenchmarkWatchEvent(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			table := routing.NewTable()
			d := &Discovery{
				opts:        DiscoveryOptions{Table: table, Logger: quietLogger},
				scopePrefix: ScopePrefix(DefaultPrefix, DefaultScope),
				known:       map[string]map[string]routing.Endpoint{},
			}
			prefix := ServicePrefix(DefaultPrefix, DefaultScope, echoService)
			event := func(i int) *clientv3.Event {
				return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{
					Key:   fmt.Appendf(nil, "%sinstance-%d", prefix, i),
					Value: fmt.Appendf(nil, `{"Op":0,"Addr":"10.%d.%d.%d:5161","Metadata":{"zone":"a"}}`, i>>16&255, i>>8&255, i&255),
				}}
			}
			for i := range n - 1 {
				d.apply(event(i))
			}
			d.publish(echoService)
			b.ResetTimer()
			for i := range b.N {
				// Alternately add instance n and remove it again, so the
				// service keeps n-1 or n instances.
				if i%2 == 0 {
					d.apply(event(n))
				} else {
					d.apply(&clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: event(n).Kv.Key}})
				}
				d.publish(echoService)
				if eps, _ := table.Endpoints(echoService); len(eps) < n-1 {
					b.Fatal("lost instances")
				}
			}
		})
	}
}
