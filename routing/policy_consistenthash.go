package routing

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"
)

// consistentHash keeps the calls that carry the same value of the hash
// key metadata on the same endpoint while the ready set is stable, and
// moves only about 1/n of the values when one of n endpoints comes or
// goes (session affinity).
//
// Each endpoint is placed on a ring at ringReplicas points derived from
// the hash of its address; a call goes to the first point at or after the
// hash of its key's value. The value is read from the call's outgoing
// metadata (where the proxy puts the client's), else its incoming
// metadata; the first value counts. The hashes (FNV-1a, then mixed) are
// the same in every process, so every quaestor proxy in front of the same
// endpoints sends a value to the same one.
//
// key is the metadata key (PolicyConfig.HashKey, case insensitive). Calls
// without it, or with an empty value, and every call when key is empty, go
// to an endpoint chosen at random.
type consistentHash struct {
	key string
}

// ringReplicas is how many points each endpoint has on the ring: each
// endpoint's share of the ring is 1/n give or take about 10% (one
// standard deviation).
const ringReplicas = 100

func (p consistentHash) NewSelector(candidates []Candidate) Selector {
	points := make([]ringPoint, 0, len(candidates)*ringReplicas)
	for i := range candidates {
		addr := fnv1a([]byte(candidates[i].Addr))
		for replica := range uint64(ringReplicas) {
			points = append(points, ringPoint{hash: replicaHash(addr, replica), owner: int32(i)})
		}
	}
	points = sortPoints(points)
	s := &consistentHashSelector{
		key:        strings.ToLower(p.key),
		candidates: candidates,
		hashes:     make([]uint64, len(points)),
		owners:     make([]int32, len(points)),
	}
	for i, pt := range points {
		s.hashes[i], s.owners[i] = pt.hash, pt.owner
	}
	return s
}

// ringPoint is one of an endpoint's points on the ring.
type ringPoint struct {
	hash  uint64
	owner int32 // index in candidates
}

// sortPoints sorts points by hash, a byte at a time from the lowest (LSD
// radix sort): a thousand endpoints make 100,000 points, which a
// comparison sort takes several times longer over, on every rebuild. The
// sort is stable, so equal hashes, however unlikely, stay in address
// order and every process builds the same ring.
func sortPoints(points []ringPoint) []ringPoint {
	spare := make([]ringPoint, len(points))
	for shift := 0; shift < 64; shift += 8 {
		var starts [256]int
		for _, pt := range points {
			starts[byte(pt.hash>>shift)]++
		}
		next := 0
		for digit, n := range starts {
			starts[digit] = next
			next += n
		}
		for _, pt := range points {
			digit := byte(pt.hash >> shift)
			spare[starts[digit]] = pt
			starts[digit]++
		}
		points, spare = spare, points
	}
	return points
}

// keyHash places a hash key's value on the ring.
func keyHash(value []byte) uint64 { return mix64(fnv1a(value)) }

// replicaHash places an endpoint's replica on the ring, from the FNV-1a
// hash of its address.
func replicaHash(addr, replica uint64) uint64 {
	// The golden ratio's odd multiple keeps every replica's input distinct.
	return mix64(addr + replica*0x9e3779b97f4a7c15)
}

// fnv1a is the 64-bit FNV-1a hash, the same in every process.
func fnv1a(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// mix64 is MurmurHash3's finalizer, a bijection that spreads every input
// bit over every output bit. FNV-1a alone leaves the high bits, which
// order the ring, nearly unchanged by a value's last bytes
// ("session-1", "session-2"), which would bunch such values together.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9a53ca94553
	h ^= h >> 33
	return h
}

type consistentHashSelector struct {
	key        string
	candidates []Candidate
	// hashes are the ring's points in ascending order; owners[i] is the
	// index in candidates of the endpoint at hashes[i].
	hashes []uint64
	owners []int32
}

func (s *consistentHashSelector) Select(info balancer.PickInfo) *Candidate {
	v, ok := s.keyValue(info.Ctx)
	if !ok {
		return &s.candidates[rand.IntN(len(s.candidates))]
	}
	i, _ := slices.BinarySearch(s.hashes, keyHash([]byte(v)))
	if i == len(s.hashes) {
		i = 0 // past the last point: the ring wraps around
	}
	return &s.candidates[s.owners[i]]
}

// keyValue returns the call's first value of the hash key.
func (s *consistentHashSelector) keyValue(ctx context.Context) (string, bool) {
	if s.key == "" || ctx == nil {
		return "", false
	}
	vals := metadata.ValueFromOutgoingContext(ctx, s.key)
	if len(vals) == 0 {
		vals = metadata.ValueFromIncomingContext(ctx, s.key)
	}
	if len(vals) == 0 || vals[0] == "" {
		return "", false
	}
	return vals[0], true
}

var (
	_ Policy   = consistentHash{}
	_ Selector = (*consistentHashSelector)(nil)
)
