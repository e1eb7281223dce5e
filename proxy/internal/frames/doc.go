// Package frames is the proxy's forwarding engine: it forwards gRPC calls
// between client and backend HTTP/2 connections frame by frame, without
// terminating gRPC on either side.
//
// Per client stream, the engine decodes the header block, asks its
// Router where the call goes (one Route per attempt), re-encodes the
// headers for that backend's connection and passes DATA frames across
// as they come, copied once at most. Responses go back the same way: headers, DATA,
// trailers (a trailers-only response stays one). Only what the engine
// needs is parsed: the pseudo-headers, grpc-timeout, grpc-status in the
// trailers, and the gRPC length prefixes inside DATA, to refuse messages
// over Config.MaxMessageSize.
//
// Connections: a client connection has a reader goroutine and a writer
// goroutine (writer.go). The reader takes DATA and whole header blocks
// straight from its read buffer, and other frames through http2.Framer and
// its checks (conn.go). The read buffer is 4 KiB while the connection
// carries small calls and grows to 256 KiB while bulk data comes, so that
// one read of a backend connection holds several frames of each of its
// streams and the writes to their clients are as large; after 2 s with
// nothing read it goes back to 4 KiB, also while calls stay open, and a
// writer that wrote nothing for 2 s gives back its grown buffers
// (idleRelease). Frames a reader produces for other connections are
// batched and written, without blocking, when its read buffer holds no
// further complete frame; the writer goroutine takes over what a socket
// does not take at once. On Linux the readers' reads and the non-blocking
// writes are raw system calls, unseen by the scheduler's monitor
// (rawio_linux.go), and large DATA payloads are not copied at all when the
// destination's writer is idle: the writer refers to them in the reader's
// buffer and sends them with a vectored write before the reader reads
// again (writer.dataLocked). Each backend (Engine.Backend) has one
// connection at a time, made when a call first needs it and taken into use
// once the backend has sent its SETTINGS. Answers to a peer's PINGs go out
// with the next frames to it, after them (pingack.go): gRPC peers ping
// after DATA, nearly once per call, and not again for DATA that comes
// before the answer. When none come, an answer goes after 5 ms, or
// after 200 ms when the PING followed the engine's data (a bandwidth
// estimate; the next frames to a backend among many are the next call's).
//
// Flow control is bridged per stream (half.go): a source gets its stream
// window back only as its bytes are handed to the destination's writer,
// so what the engine holds per stream is bounded by the window it
// advertised (256 KiB, doubling up to 4 MiB while the destination keeps
// up); connection windows are given back as DATA is read, so that one
// slow stream cannot stop the others of its connection.
//
// Retries (call.go): an attempt that never reached a backend (its
// connection could not be made, the stream was refused, or a GOAWAY says
// it was not processed) is sent again to another backend; one that
// failed with UNAVAILABLE before any response is sent again when
// Config.RetryDelay allows. Either way the request must still be whole:
// the engine keeps up to 256 KiB of it until the response headers
// commit the call.
//
// Engine.ServeLocal serves the process's own connections (the proxy's
// health checks and load polls of its backends): their calls are routed
// and forwarded as clients' are, marked Request.Local, outside the
// client limits and InFlight, and a drain does not wait for them.
//
// The engine knows nothing of services or registries: the Router
// decides, and the proxy package supplies it (proxy/route.go).
package frames
