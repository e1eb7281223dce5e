package routing

import (
	"cmp"
	"context"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"
)

// consistentHash keeps the calls that carry the same value of the hash
// key metadata on the same endpoint while the ready set is stable, and
// moves only about 1/n of the values when one of n endpoints comes or
// goes (session affinity).
//
// Each endpoint is placed on a ring at ringReplicas points hashed from its
// address; a call goes to the first point at or after the hash of its key's
// value. The value is read from the call's outgoing metadata (where the
// proxy puts the client's), else its incoming metadata; the first value
// counts. Hashes are FNV-1a, which is the same in every process, so every
// quaestor proxy in front of the same endpoints agrees.
//
// key is the metadata key (PolicyConfig.HashKey, case insensitive). Calls
// without it, or with an empty value, and every call when key is empty, go
// to an endpoint chosen at random.
type consistentHash struct {
	key string
}

// ringReplicas is how many points each endpoint has on the ring: enough
// that each endpoint's share stays within about ±10% of 1/n.
const ringReplicas = 100

func (p consistentHash) NewSelector(candidates []Candidate) Selector {
	type point struct {
		hash  uint64
		index int32
	}
	points := make([]point, 0, len(candidates)*ringReplicas)
	var buf []byte
	for i := range candidates {
		for replica := range ringReplicas {
			buf = append(buf[:0], candidates[i].Addr...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(replica), 10)
			points = append(points, point{hash: ringHash(buf), index: int32(i)})
		}
	}
	// Equal hashes, unlikely, are ordered by address so that every process
	// builds the same ring.
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(candidates[a.index].Addr, candidates[b.index].Addr)
	})
	s := &consistentHashSelector{
		key:        strings.ToLower(p.key),
		candidates: candidates,
		hashes:     make([]uint64, len(points)),
		owners:     make([]int32, len(points)),
	}
	for i, pt := range points {
		s.hashes[i], s.owners[i] = pt.hash, pt.index
	}
	return s
}

// ringHash places an endpoint's replica ("addr#replica") or a hash key's
// value on the ring.
func ringHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return mix64(h.Sum64())
}

// mix64 is MurmurHash3's finalizer. FNV-1a leaves the high bits, which
// order the ring, nearly unchanged by the last bytes ("addr#1", "addr#2"),
// which would bunch an endpoint's points together; mixing spreads them.
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
	i, _ := slices.BinarySearch(s.hashes, ringHash([]byte(v)))
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
