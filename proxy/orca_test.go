package proxy

import (
	"encoding/base64"
	"math"
	"testing"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fullReport sets every field of an OrcaLoadReport.
func fullReport() *v3orcapb.OrcaLoadReport {
	return &v3orcapb.OrcaLoadReport{
		CpuUtilization:         0.42,
		MemUtilization:         0.25,
		Rps:                    17,
		RequestCost:            map[string]float64{"db": 3},
		Utilization:            map[string]float64{"gpu": 0.5},
		RpsFractional:          12.5,
		Eps:                    0.75,
		NamedMetrics:           map[string]float64{"current_requests": 7, "request_capacity": 64},
		ApplicationUtilization: 0.61,
	}
}

// usedFields is what decodeLoadReport keeps of r.
func usedFields(r *v3orcapb.OrcaLoadReport) *v3orcapb.OrcaLoadReport {
	return &v3orcapb.OrcaLoadReport{
		CpuUtilization:         r.GetCpuUtilization(),
		MemUtilization:         r.GetMemUtilization(),
		RpsFractional:          r.GetRpsFractional(),
		Eps:                    r.GetEps(),
		NamedMetrics:           r.GetNamedMetrics(),
		ApplicationUtilization: r.GetApplicationUtilization(),
	}
}

func orcaTrailerOf(t testing.TB, r *v3orcapb.OrcaLoadReport, enc *base64.Encoding) []hpack.HeaderField {
	t.Helper()
	raw, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return []hpack.HeaderField{
		{Name: "grpc-status", Value: "0"},
		{Name: orcaTrailer, Value: enc.EncodeToString(raw)},
	}
}

func TestServerLoadDecodesWhatRoutingUses(t *testing.T) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		got := serverLoad(orcaTrailerOf(t, fullReport(), enc))
		if want := usedFields(fullReport()); !proto.Equal(got, want) {
			t.Errorf("padded %v: serverLoad = %v, want %v", enc == base64.StdEncoding, got, want)
		}
	}
	if got := serverLoad(orcaTrailerOf(t, &v3orcapb.OrcaLoadReport{}, base64.StdEncoding)); got == nil || !proto.Equal(got, &v3orcapb.OrcaLoadReport{}) {
		t.Errorf("empty report: serverLoad = %v, want an empty report", got)
	}
}

func TestServerLoadLargeReport(t *testing.T) {
	// Larger than the decoder's stack buffer.
	r := fullReport()
	for i := range 40 {
		r.NamedMetrics[string(rune('a'+i%26))+"_metric_with_a_long_name"] = float64(i)
	}
	got := serverLoad(orcaTrailerOf(t, r, base64.StdEncoding))
	if want := usedFields(r); !proto.Equal(got, want) {
		t.Errorf("serverLoad = %v, want %v", got, want)
	}
}

func TestServerLoadRejectsMalformed(t *testing.T) {
	raw, err := proto.Marshal(fullReport())
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := protowire.AppendTag(nil, orcaNamedMetrics, protowire.BytesType)
	entry := protowire.AppendTag(nil, mapKey, protowire.BytesType)
	entry = protowire.AppendBytes(entry, []byte{0xff, 0xfe})
	badUTF8 = protowire.AppendBytes(badUTF8, entry)
	for name, value := range map[string]string{
		"not base64":         "!!!",
		"truncated":          base64.StdEncoding.EncodeToString(raw[:len(raw)-3]),
		"bad tag":            base64.StdEncoding.EncodeToString([]byte{0x00}),
		"short double":       base64.StdEncoding.EncodeToString([]byte{0x09, 1, 2}),
		"named metric cut":   base64.StdEncoding.EncodeToString([]byte{0x42, 0x05, 0x0a, 0x01}),
		"named key not UTF8": base64.StdEncoding.EncodeToString(badUTF8),
	} {
		if got := serverLoad([]hpack.HeaderField{{Name: orcaTrailer, Value: value}}); got != nil {
			t.Errorf("%s: serverLoad = %v, want nil", name, got)
		}
	}
	if got := serverLoad([]hpack.HeaderField{{Name: "grpc-status", Value: "0"}}); got != nil {
		t.Errorf("no report: serverLoad = %v, want nil", got)
	}
}

// FuzzDecodeLoadReport checks the decoder against proto.Unmarshal: what
// proto.Unmarshal takes, the decoder takes too, with the same fields.
func FuzzDecodeLoadReport(f *testing.F) {
	raw, err := proto.Marshal(fullReport())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := decodeLoadReport(raw)
		want := new(v3orcapb.OrcaLoadReport)
		if proto.Unmarshal(raw, want) != nil {
			return // the decoder need not check the fields it skips
		}
		if got == nil {
			t.Fatalf("decodeLoadReport(%x) = nil, proto.Unmarshal took it: %v", raw, want)
		}
		if !proto.Equal(got, usedFields(want)) && !sameNaNs(got, usedFields(want)) {
			t.Fatalf("decodeLoadReport(%x) = %v, want %v", raw, got, usedFields(want))
		}
	})
}

// sameNaNs reports whether a and b differ only where both hold NaN
// (proto.Equal never finds a NaN equal to itself).
func sameNaNs(a, b *v3orcapb.OrcaLoadReport) bool {
	eq := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	if !eq(a.CpuUtilization, b.CpuUtilization) || !eq(a.MemUtilization, b.MemUtilization) ||
		!eq(a.RpsFractional, b.RpsFractional) || !eq(a.Eps, b.Eps) ||
		!eq(a.ApplicationUtilization, b.ApplicationUtilization) || len(a.NamedMetrics) != len(b.NamedMetrics) {
		return false
	}
	for k, v := range a.NamedMetrics {
		w, ok := b.NamedMetrics[k]
		if !ok || !eq(v, w) {
			return false
		}
	}
	return true
}

// BenchmarkServerLoad: one per-call report, as the loadreport library
// writes it.
func BenchmarkServerLoad(b *testing.B) {
	trailer := orcaTrailerOf(b, &v3orcapb.OrcaLoadReport{
		CpuUtilization: 0.42,
		MemUtilization: 0.25,
		RpsFractional:  1234.5,
		NamedMetrics:   map[string]float64{"current_requests": 7, "request_capacity": 64},
	}, base64.StdEncoding)
	b.ReportAllocs()
	for b.Loop() {
		if serverLoad(trailer) == nil {
			b.Fatal("no report")
		}
	}
}
