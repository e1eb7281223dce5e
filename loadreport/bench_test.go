package loadreport

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// BenchmarkPerCall measures what a reporter adds to a call: counting it,
// and building and encoding its ORCA trailer (what grpc-go's orca does with
// the provider's metrics once the handler returns).
func BenchmarkPerCall(b *testing.B) {
	m := &fakeMachine{cpu: cpuTimes{busy: 30, total: 120}, memory: testMemory}
	r := newReporter(Options{Capacity: 100}, func() time.Time { return testTime }, m.machine())
	b.Cleanup(r.Close)
	info := &grpc.UnaryServerInfo{FullMethod: "/quaestor.example.v1.Echo/Unary"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.Run("count", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.unaryInterceptor(ctx, nil, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("orca trailer", func(b *testing.B) {
		b.ReportAllocs()
		p := metricsProvider{r}
		for b.Loop() {
			if _, err := proto.Marshal(orcaLoadReport(p.ServerMetrics())); err != nil {
				b.Fatal(err)
			}
		}
	})
}
