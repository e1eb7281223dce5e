package proxy

import (
	"encoding/base64"
	"math"
	"unicode/utf8"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/quaestor-go/quaestor/loadreport"
)

// orcaTrailer is the trailer a backend's per-call ORCA report comes in.
const orcaTrailer = "endpoint-load-metrics-bin"

// serverLoad decodes the ORCA report a backend may put in its trailers,
// or returns nil when there is none or it is malformed.
func serverLoad(trailer []hpack.HeaderField) *v3orcapb.OrcaLoadReport {
	for _, f := range trailer {
		if f.Name != orcaTrailer {
			continue
		}
		enc := base64.StdEncoding
		if len(f.Value)%4 != 0 {
			enc = base64.RawStdEncoding
		}
		// Reports are tens of bytes: decode them on the stack.
		var small [256]byte
		raw := small[:0]
		if n := enc.DecodedLen(len(f.Value)); n > len(small) {
			raw = make([]byte, 0, n)
		}
		raw, err := enc.AppendDecode(raw, []byte(f.Value))
		if err != nil {
			return nil
		}
		return decodeLoadReport(raw)
	}
	return nil
}

// Field numbers of xds.data.orca.v3.OrcaLoadReport, and of the entries
// of its maps.
const (
	orcaCPU            = 1
	orcaMem            = 2
	orcaRPSFractional  = 6
	orcaEPS            = 7
	orcaNamedMetrics   = 8
	orcaAppUtilization = 9
	mapKey             = 1
	mapValue           = 2
)

// decodeLoadReport reads the fields of an OrcaLoadReport that routing
// uses (routing.EndpointState.recordORCA) straight from the wire, and
// skips the others (rps, request_cost, utilization). At 1,000 instances
// nearly every call brings a report that is taken (each endpoint's are
// taken every 100 ms), and proto.Unmarshal of the whole report, its maps
// through reflection, was about 4 % of the proxy's CPU there. nil when
// raw is not a well-formed report.
func decodeLoadReport(raw []byte) *v3orcapb.OrcaLoadReport {
	r := new(v3orcapb.OrcaLoadReport)
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return nil
		}
		raw = raw[n:]
		var ok bool
		switch {
		case typ == protowire.Fixed64Type && num == orcaCPU:
			r.CpuUtilization, raw, ok = consumeDouble(raw)
		case typ == protowire.Fixed64Type && num == orcaMem:
			r.MemUtilization, raw, ok = consumeDouble(raw)
		case typ == protowire.Fixed64Type && num == orcaRPSFractional:
			r.RpsFractional, raw, ok = consumeDouble(raw)
		case typ == protowire.Fixed64Type && num == orcaEPS:
			r.Eps, raw, ok = consumeDouble(raw)
		case typ == protowire.Fixed64Type && num == orcaAppUtilization:
			r.ApplicationUtilization, raw, ok = consumeDouble(raw)
		case typ == protowire.BytesType && num == orcaNamedMetrics:
			var entry []byte
			if entry, n = protowire.ConsumeBytes(raw); n < 0 {
				return nil
			}
			raw = raw[n:]
			var key string
			var value float64
			if key, value, ok = decodeMapEntry(entry); ok {
				if r.NamedMetrics == nil {
					r.NamedMetrics = make(map[string]float64, 2)
				}
				r.NamedMetrics[key] = value
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, raw)
			raw, ok = raw[max(n, 0):], n >= 0
		}
		if !ok {
			return nil
		}
	}
	return r
}

// consumeDouble reads a fixed64 double; false when raw is too short.
func consumeDouble(raw []byte) (float64, []byte, bool) {
	v, n := protowire.ConsumeFixed64(raw)
	if n < 0 {
		return 0, nil, false
	}
	return math.Float64frombits(v), raw[n:], true
}

// decodeMapEntry reads a map<string, double> entry; a missing key or
// value is the zero value, as in any map entry.
func decodeMapEntry(b []byte) (key string, value float64, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", 0, false
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && num == mapKey:
			var k []byte
			if k, n = protowire.ConsumeBytes(b); n < 0 {
				return "", 0, false
			}
			if !utf8.Valid(k) {
				return "", 0, false // proto3 strings are UTF-8
			}
			key, b = metricName(k), b[n:]
		case typ == protowire.Fixed64Type && num == mapValue:
			if value, b, ok = consumeDouble(b); !ok {
				return "", 0, false
			}
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", 0, false
			}
			b = b[n:]
		}
	}
	return key, value, true
}

// metricName returns k as a string, without allocating for the names
// the loadreport library sends on every call.
func metricName(k []byte) string {
	switch string(k) {
	case loadreport.CurrentRequestsMetric:
		return loadreport.CurrentRequestsMetric
	case loadreport.RequestCapacityMetric:
		return loadreport.RequestCapacityMetric
	}
	return string(k)
}
