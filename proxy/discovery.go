package proxy

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
)

// Locator is what the look-aside discovery needs from routing.
type Locator interface {
	// Locate returns the host:port of the instances of service that may
	// be called now, best first; known is false when nothing lists the
	// service.
	Locate(service string) (addrs []string, known bool)
}

// discoveryServer answers Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc,
// wire-compatible with the .NET quaestor, from the routing table: a memory
// lookup, no probe per request. Like the .NET service, DiscoverServices and
// DiscoverTopServices answer an empty list for a service or scope they do
// not know; the DiscoverTopService extension fails with a status instead.
type discoveryServer struct {
	sdpb.UnimplementedServiceDiscoveryGrpcServer
	scope   string
	locator Locator
}

func (d *discoveryServer) DiscoverServices(_ context.Context, req *sdpb.DiscoverServicesRequest) (*sdpb.DiscoverServicesResponse, error) {
	addrs, _ := d.locate(req)
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return d.response(req, addrs), nil
}

func (d *discoveryServer) DiscoverTopServices(_ context.Context, req *sdpb.DiscoverServicesRequest) (*sdpb.DiscoverServicesResponse, error) {
	addrs, _ := d.locate(req)
	return d.response(req, addrs), nil
}

func (d *discoveryServer) DiscoverTopService(_ context.Context, req *sdpb.DiscoverServicesRequest) (*sdpb.ServiceLocationMsg, error) {
	if scope := req.GetScope(); scope != "" && scope != d.scope {
		return nil, status.Errorf(codes.NotFound, "quaestor: scope %q is not served here (this proxy serves scope %q)", scope, d.scope)
	}
	addrs, known := d.locate(req)
	switch {
	case !known:
		return nil, status.Errorf(codes.NotFound, "quaestor: unknown service %q: no instance of it is listed in the config or registered", req.GetServiceName())
	case len(addrs) == 0:
		return nil, status.Errorf(codes.Unavailable, "quaestor: no healthy instance of service %q", req.GetServiceName())
	}
	return d.location(req, addrs[0]), nil
}

// locate returns the instances for req, best first; none for another
// scope.
func (d *discoveryServer) locate(req *sdpb.DiscoverServicesRequest) ([]string, bool) {
	if scope := req.GetScope(); scope != "" && scope != d.scope {
		return nil, false
	}
	return d.locator.Locate(req.GetServiceName())
}

func (d *discoveryServer) response(req *sdpb.DiscoverServicesRequest, addrs []string) *sdpb.DiscoverServicesResponse {
	if n := int(req.GetMaxCount()); n > 0 && len(addrs) > n {
		addrs = addrs[:n]
	}
	resp := &sdpb.DiscoverServicesResponse{ServiceLocations: make([]*sdpb.ServiceLocationMsg, 0, len(addrs))}
	for _, addr := range addrs {
		resp.ServiceLocations = append(resp.ServiceLocations, d.location(req, addr))
	}
	return resp
}

func (d *discoveryServer) location(req *sdpb.DiscoverServicesRequest, addr string) *sdpb.ServiceLocationMsg {
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	return &sdpb.ServiceLocationMsg{Scope: d.scope, ServiceName: req.GetServiceName(), HostName: host, Port: int32(port)}
}

// DiscoveryServiceName is the full name of the look-aside discovery
// service, under which each proxy registers itself.
const DiscoveryServiceName = "Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc"
