package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// reflectionProxy serves grpc.reflection.v1 and v1alpha for everything the
// proxy routes to. Listing comes from the router; each file or symbol lookup
// goes to a backend that knows it, starting with the backend of the service
// the symbol belongs to, and the session stays with the backend that last
// answered (descriptors of one service come from one instance, whose
// dependencies it knows). The proxy's own services are answered locally.
type reflectionProxy struct {
	router Router
	// localServices and localFiles describe the proxy's own services.
	localServices []string
	localFiles    *protoregistry.Files
}

// describeLocal records the services registered on srv, and their files,
// to be answered locally. Call it once, before srv serves.
func (p *reflectionProxy) describeLocal(srv *grpc.Server) {
	p.localFiles = new(protoregistry.Files)
	for name, info := range srv.GetServiceInfo() {
		p.localServices = append(p.localServices, name)
		if file, ok := info.Metadata.(string); ok {
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(file); err == nil {
				registerWithImports(p.localFiles, fd)
			}
		}
	}
	slices.Sort(p.localServices)
}

func registerWithImports(files *protoregistry.Files, fd protoreflect.FileDescriptor) {
	if _, err := files.FindFileByPath(fd.Path()); err == nil {
		return
	}
	imports := fd.Imports()
	for i := range imports.Len() {
		registerWithImports(files, imports.Get(i).FileDescriptor)
	}
	_ = files.RegisterFile(fd) // a conflict leaves the first registration in place
}

type reflectionV1 struct {
	rpb.UnimplementedServerReflectionServer
	p *reflectionProxy
}

func (r reflectionV1) ServerReflectionInfo(stream rpb.ServerReflection_ServerReflectionInfoServer) error {
	return serveReflection(stream.Context(), r.p, stream.Recv, stream.Send, func() *rpb.ServerReflectionResponse { return new(rpb.ServerReflectionResponse) })
}

type reflectionV1Alpha struct {
	rpbalpha.UnimplementedServerReflectionServer
	p *reflectionProxy
}

func (r reflectionV1Alpha) ServerReflectionInfo(stream rpbalpha.ServerReflection_ServerReflectionInfoServer) error {
	return serveReflection(stream.Context(), r.p, stream.Recv, stream.Send, func() *rpbalpha.ServerReflectionResponse { return new(rpbalpha.ServerReflectionResponse) })
}

// serveReflection answers one client reflection stream of either version:
// requests are read as v1 (v1alpha has the same wire form) and answers
// sent back in the stream's own version.
func serveReflection[Req, Resp proto.Message](ctx context.Context, p *reflectionProxy, recv func() (Req, error), send func(Resp) error, newResp func() Resp) error {
	s := p.newSession(ctx)
	defer s.close()
	for {
		req, err := recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		v1req, err := convertMessage(req, &rpb.ServerReflectionRequest{})
		if err != nil {
			return err
		}
		resp, err := convertMessage(s.answer(v1req), newResp())
		if err != nil {
			return err
		}
		if err := send(resp); err != nil {
			return err
		}
	}
}

// convertMessage copies a message into another type with the same wire
// form, as v1 and v1alpha reflection messages are.
func convertMessage[T proto.Message](from proto.Message, to T) (T, error) {
	b, err := proto.Marshal(from)
	if err == nil {
		err = proto.Unmarshal(b, to)
	}
	if err != nil {
		return to, status.Errorf(codes.Internal, "quaestor: converting %T to %T: %v", from, to, err)
	}
	return to, nil
}

// reflectionSession is one client reflection stream.
type reflectionSession struct {
	ctx      context.Context
	p        *reflectionProxy
	backends map[string]*backendReflection // by service
	current  *backendReflection
	sent     map[string]bool // local files already sent on this stream
}

func (p *reflectionProxy) newSession(ctx context.Context) *reflectionSession {
	return &reflectionSession{ctx: ctx, p: p, backends: make(map[string]*backendReflection), sent: make(map[string]bool)}
}

func (s *reflectionSession) close() {
	for _, b := range s.backends {
		b.close()
	}
}

func (s *reflectionSession) answer(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
	var resp *rpb.ServerReflectionResponse
	switch r := req.GetMessageRequest().(type) {
	case *rpb.ServerReflectionRequest_ListServices:
		resp = s.listServices()
	case *rpb.ServerReflectionRequest_FileByFilename:
		if fd, err := s.p.localFiles.FindFileByPath(r.FileByFilename); err == nil {
			resp = s.localFile(fd)
		} else {
			resp = s.askBackends(req, "")
		}
	case *rpb.ServerReflectionRequest_FileContainingSymbol:
		if d, err := s.p.localFiles.FindDescriptorByName(protoreflect.FullName(r.FileContainingSymbol)); err == nil {
			resp = s.localFile(d.ParentFile())
		} else {
			resp = s.askBackends(req, s.serviceOf(r.FileContainingSymbol))
		}
	case *rpb.ServerReflectionRequest_FileContainingExtension:
		resp = s.askBackends(req, s.serviceOf(r.FileContainingExtension.GetContainingType()))
	case *rpb.ServerReflectionRequest_AllExtensionNumbersOfType:
		resp = s.askBackends(req, s.serviceOf(r.AllExtensionNumbersOfType))
	default:
		resp = errorResponse(codes.InvalidArgument, "quaestor: unsupported reflection request")
	}
	resp.ValidHost = req.GetHost()
	resp.OriginalRequest = req
	return resp
}

func (s *reflectionSession) listServices() *rpb.ServerReflectionResponse {
	names := append(s.p.router.Services(), s.p.localServices...)
	slices.Sort(names)
	names = slices.Compact(names)
	list := &rpb.ListServiceResponse{Service: make([]*rpb.ServiceResponse, 0, len(names))}
	for _, name := range names {
		list.Service = append(list.Service, &rpb.ServiceResponse{Name: name})
	}
	return &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_ListServicesResponse{ListServicesResponse: list}}
}

// localFile answers with fd and the imports not yet sent on this stream.
func (s *reflectionSession) localFile(fd protoreflect.FileDescriptor) *rpb.ServerReflectionResponse {
	var files [][]byte
	var add func(protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if s.sent[fd.Path()] {
			return
		}
		s.sent[fd.Path()] = true
		b, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err == nil {
			files = append(files, b)
		}
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
	}
	// The requested file is always sent, even when sent before.
	delete(s.sent, fd.Path())
	add(fd)
	return &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_FileDescriptorResponse{
		FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: files},
	}}
}

// serviceOf returns the routed service that symbol names or belongs to
// ("pkg.Svc" or "pkg.Svc.Method"), or "".
func (s *reflectionSession) serviceOf(symbol string) string {
	best := ""
	for _, svc := range s.p.router.Services() {
		if (symbol == svc || len(symbol) > len(svc) && symbol[len(svc)] == '.' && symbol[:len(svc)] == svc) && len(svc) > len(best) {
			best = svc
		}
	}
	return best
}

// askBackends asks the backend of preferred first, then the backend that
// answered last, then the backends of the other routed services, until one
// answers with anything but NOT_FOUND.
func (s *reflectionSession) askBackends(req *rpb.ServerReflectionRequest, preferred string) *rpb.ServerReflectionResponse {
	var candidates []string
	if preferred != "" {
		candidates = append(candidates, preferred)
	}
	if s.current != nil {
		candidates = append(candidates, s.current.service)
	}
	candidates = append(candidates, s.p.router.Services()...)

	resp := errorResponse(codes.NotFound, "quaestor: no backend of any routed service knows this symbol or file")
	tried := make(map[string]bool)
	for _, service := range candidates {
		if tried[service] {
			continue
		}
		tried[service] = true
		b, err := s.backend(service)
		if err != nil {
			continue
		}
		answer, err := b.ask(req)
		if err != nil {
			// The stream broke: forget it, a later lookup opens another.
			b.close()
			delete(s.backends, service)
			if s.current == b {
				s.current = nil
			}
			resp = errorResponse(status.Code(err), fmt.Sprintf("quaestor: reflection on a backend of %q: %v", service, status.Convert(err).Message()))
			continue
		}
		if e := answer.GetErrorResponse(); e != nil && codes.Code(e.GetErrorCode()) == codes.NotFound {
			resp = answer
			continue
		}
		s.current = b
		return answer
	}
	return resp
}

func (s *reflectionSession) backend(service string) (*backendReflection, error) {
	if b, ok := s.backends[service]; ok {
		return b, nil
	}
	conn, err := s.p.router.Conn(service)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	b := &backendReflection{service: service, conn: conn, ctx: ctx, cancel: cancel}
	s.backends[service] = b
	return b, nil
}

func errorResponse(code codes.Code, msg string) *rpb.ServerReflectionResponse {
	return &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_ErrorResponse{
		ErrorResponse: &rpb.ErrorResponse{ErrorCode: int32(code), ErrorMessage: msg},
	}}
}

// backendReflection is one reflection stream to one instance of a service,
// v1 when the backend serves it, else v1alpha.
type backendReflection struct {
	service string
	conn    grpc.ClientConnInterface
	ctx     context.Context
	cancel  context.CancelFunc
	v1      rpb.ServerReflection_ServerReflectionInfoClient
	alpha   rpbalpha.ServerReflection_ServerReflectionInfoClient
}

func (b *backendReflection) ask(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	if b.alpha == nil {
		if b.v1 == nil {
			stream, err := rpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(b.ctx)
			if err != nil {
				return nil, err
			}
			b.v1 = stream
		}
		resp, err := roundTrip(b.v1, req)
		if status.Code(err) != codes.Unimplemented {
			return resp, err
		}
		b.v1 = nil
		stream, err := rpbalpha.NewServerReflectionClient(b.conn).ServerReflectionInfo(b.ctx)
		if err != nil {
			return nil, err
		}
		b.alpha = stream
	}
	alphaReq, err := convertMessage(req, &rpbalpha.ServerReflectionRequest{})
	if err != nil {
		return nil, err
	}
	resp, err := roundTrip(b.alpha, alphaReq)
	if err != nil {
		return nil, err
	}
	return convertMessage(resp, &rpb.ServerReflectionResponse{})
}

// roundTrip sends one request and reads its answer.
func roundTrip[Req, Resp any](stream interface {
	Send(Req) error
	Recv() (Resp, error)
}, req Req) (Resp, error) {
	// A failed Send means the stream ended; Recv returns why.
	_ = stream.Send(req)
	return stream.Recv()
}

func (b *backendReflection) close() {
	b.cancel()
}
