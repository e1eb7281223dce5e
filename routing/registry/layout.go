package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/quaestor-go/quaestor/routing"
)

// Defaults of the key layout.
const (
	DefaultPrefix = "/quaestor"
	DefaultScope  = "default"
)

// Metadata keys quaestor writes and reads.
const (
	MetaTLS    = "tls"    // "true" when the instance serves TLS
	MetaWeight = "weight" // relative weight, a positive integer
	MetaAgent  = "agent"  // the supervisor or process that registered it
	MetaZone   = "zone"   // optional locality
)

// ScopePrefix returns the key prefix of every instance in scope, ending
// in "/".
func ScopePrefix(prefix, scope string) string {
	return strings.TrimSuffix(prefix, "/") + "/services/" + scope + "/"
}

// ServicePrefix returns the key prefix of the instances of one service,
// ending in "/", so that "Worker" does not match "WorkerX".
func ServicePrefix(prefix, scope, service string) string {
	return ScopePrefix(prefix, scope) + service + "/"
}

// InstanceKey returns the key of one instance.
func InstanceKey(prefix, scope, service, id string) string {
	return ServicePrefix(prefix, scope, service) + id
}

// parseKey splits an instance key under scopePrefix into its service and
// instance id.
func parseKey(scopePrefix, key string) (service, id string, err error) {
	rest, ok := strings.CutPrefix(key, scopePrefix)
	if !ok {
		return "", "", fmt.Errorf("key is not under %q", scopePrefix)
	}
	service, id, ok = strings.Cut(rest, "/")
	if !ok || service == "" || id == "" || strings.Contains(id, "/") {
		return "", "", fmt.Errorf("key is not %s{service}/{instance-id}", scopePrefix)
	}
	return service, id, nil
}

// entry is the stored value: the JSON of etcd's naming/endpoints update.
type entry struct {
	Op       uint8          `json:"Op"`
	Addr     string         `json:"Addr"`
	Metadata map[string]any `json:"Metadata,omitempty"`
}

// etcd's endpoints.Add; Delete (1) is never stored.
const opAdd = 0

// encodeValue returns the stored value for an instance.
func encodeValue(addr string, metadata map[string]string) (string, error) {
	e := entry{Op: opAdd, Addr: addr}
	if len(metadata) > 0 {
		e.Metadata = make(map[string]any, len(metadata))
		for k, v := range metadata {
			e.Metadata[k] = typedMetadata(k, v)
		}
	}
	b, err := json.Marshal(e)
	return string(b), err
}

// typedMetadata stores the well-known keys with their JSON types, as
// other writers of the format do.
func typedMetadata(key, value string) any {
	switch key {
	case MetaTLS:
		if b, err := strconv.ParseBool(value); err == nil {
			return b
		}
	case MetaWeight:
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			return n
		}
	}
	return value
}

// decodeValue reads a stored value into an Endpoint. Errors say what is
// wrong with it, for a log line that also names the key.
func decodeValue(value []byte) (routing.Endpoint, error) {
	var e entry
	if err := json.Unmarshal(value, &e); err != nil {
		return routing.Endpoint{}, fmt.Errorf("value is not endpoint JSON: %w", err)
	}
	if e.Op != opAdd {
		return routing.Endpoint{}, fmt.Errorf("value has Op %d, want 0 (add)", e.Op)
	}
	if err := routing.ValidateAddr(e.Addr); err != nil {
		return routing.Endpoint{}, fmt.Errorf("value has a bad Addr: %w", err)
	}
	ep := routing.Endpoint{Addr: e.Addr}
	if len(e.Metadata) > 0 {
		ep.Metadata = make(map[string]string, len(e.Metadata))
		for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
			switch v := e.Metadata[k].(type) {
			case string:
				ep.Metadata[k] = v
			case bool, float64:
				ep.Metadata[k] = fmt.Sprint(v)
			case nil:
			default:
				b, _ := json.Marshal(v)
				ep.Metadata[k] = string(b)
			}
		}
	}
	if w, ok := ep.Metadata[MetaWeight]; ok {
		if n, err := strconv.ParseFloat(w, 64); err != nil || n <= 0 {
			return routing.Endpoint{}, fmt.Errorf("value has metadata weight %q, want a positive number", w)
		}
	}
	return ep, nil
}
