package frames

import (
	"errors"
	"fmt"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock is a decoded HEADERS frame with its CONTINUATION frames.
// Its fields are the connection's, reused for the next block: whoever
// keeps them copies them.
type headerBlock struct {
	streamID  uint32
	fields    []hpack.HeaderField
	endStream bool
	// truncated: the block decodes to more than the header list size
	// limit; fields holds what came before.
	truncated bool
	// malformed says why the block breaks HTTP/2's rules on fields
	// (pseudo-headers after regular fields, upper-case names), "" when
	// it does not: the stream is reset.
	malformed string
}

// headerReader assembles and decodes a connection's header blocks. The
// connection's reader decodes them itself, rather than through
// http2.Framer's ReadMetaHeaders, to reuse the fields' slice and the
// block's bytes from call to call: those allocations were a third of the
// proxy's per call.
type headerReader struct {
	dec   *hpack.Decoder
	limit uint32
	block headerBlock
	size  uint32
	// open: a HEADERS frame without END_HEADERS was read.
	open bool
}

func newHeaderReader(limit uint32) *headerReader {
	r := &headerReader{limit: limit}
	r.dec = hpack.NewDecoder(4096, r.emit)
	r.dec.SetMaxStringLength(int(limit))
	return r
}

func (r *headerReader) emit(f hpack.HeaderField) {
	if r.block.truncated {
		return
	}
	r.size += f.Size()
	if r.size > r.limit {
		r.block.truncated = true
		return
	}
	if r.block.malformed == "" {
		switch {
		case f.IsPseudo() && len(r.block.fields) > 0 && !r.block.fields[len(r.block.fields)-1].IsPseudo():
			r.block.malformed = fmt.Sprintf("pseudo-header %q after regular fields", f.Name)
		case hasUpper(f.Name):
			r.block.malformed = fmt.Sprintf("field name %q is not lower case", f.Name)
		}
	}
	r.block.fields = append(r.block.fields, f)
}

// errCompression is a header block HPACK cannot decode: the connection's
// decoding state is lost.
var errCompression = errors.New("header block does not decode")

// headers starts a block with a HEADERS frame's fragment; done reports
// whether it is complete.
func (r *headerReader) headers(streamID uint32, frag []byte, endStream, endHeaders bool) (done bool, err error) {
	r.block = headerBlock{streamID: streamID, fields: r.block.fields[:0], endStream: endStream}
	r.size = 0
	r.open = !endHeaders
	return r.decode(frag)
}

// continuation adds a CONTINUATION frame (the framer has checked it
// follows the block's HEADERS); done reports whether the block is
// complete.
func (r *headerReader) continuation(f *http2.ContinuationFrame) (done bool, err error) {
	r.open = !f.HeadersEnded()
	return r.decode(f.HeaderBlockFragment())
}

// decode decodes a fragment of the block as it comes, as gRPC's framer
// does: a block past the size limit while more of it is announced ends
// the connection (nothing is gained reading a flood of CONTINUATION
// frames); a block that ends in the frame that passed the limit is
// truncated, and its stream reset.
func (r *headerReader) decode(frag []byte) (done bool, err error) {
	if _, err := r.dec.Write(frag); err != nil {
		return false, fmt.Errorf("%w: %v", errCompression, err)
	}
	if r.open {
		if r.block.truncated {
			return false, http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		return false, nil
	}
	if err := r.dec.Close(); err != nil {
		return false, fmt.Errorf("%w: %v", errCompression, err)
	}
	return true, nil
}

// hasUpper reports whether s has an upper-case ASCII letter, which HTTP/2
// field names must not.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
