package h2

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The reader decodes header blocks itself, into one MetaHeadersFrame a
// connection reuses, as the Framer's ReadMetaHeaders would: the Framer
// made a MetaHeadersFrame, an emit closure with its captured counters
// and a growing field slice for every HEADERS frame: 12 objects a block
// of nine fields with its HEADERS frame, 1 now (TestHeaderBlockAllocations),
// of the thirty-odd a request allocated at one stream a connection. The
// checks and the errors are the Framer's (golang.org/x/net/http2
// readMetaFrame), so that the connection answers a bad block as before:
//
//   - a field value that is not valid, a regular field name that is not
//     a lower-case token, a pseudo-header field after a regular one, an
//     unknown or repeated pseudo-header field, or request and response
//     pseudo-header fields mixed: StreamError PROTOCOL_ERROR;
//   - fields past MaxHeaderListSize (the trailer field's names counted
//     apart): Truncated, the rest decoded for the table only;
//   - a fragment larger than twice the header list left, or a
//     CONTINUATION after an invalid field: ConnectionError
//     PROTOCOL_ERROR; an HPACK error: ConnectionError COMPRESSION_ERROR.
//
// The frames of one block are counted together by frameCounter (the
// CONTINUATION flood bound), as they were inside the Framer's ReadFrame.

// headerBlock is the decoding state of the header block being read. The
// reader goroutine's own.
type headerBlock struct {
	meta           http2.MetaHeadersFrame // the block decoded; Fields reused
	dec            *hpack.Decoder
	headersRemain  uint32
	trailersRemain uint32
	sawRegular     bool
	invalid        error
}

// maxKeptFields bounds the field slice a connection keeps between blocks.
const maxKeptFields = 64

var (
	errPseudoAfterRegular = errors.New("h2: pseudo-header field after a regular one")
	errBadFieldName       = errors.New("h2: invalid header field name")
	errBadFieldValue      = errors.New("h2: invalid header field value")
	errBadPseudo          = errors.New("h2: unknown, repeated or mixed pseudo-header fields")
)

func (hb *headerBlock) init() {
	hb.dec = hpack.NewDecoder(headerTableSize, hb.emit)
}

// emit takes one decoded field (the Framer's readMetaFrame emit function).
func (hb *headerBlock) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		hb.invalid = errBadFieldValue
	}
	if strings.HasPrefix(hf.Name, ":") {
		if hb.sawRegular {
			hb.invalid = errPseudoAfterRegular
		}
	} else {
		hb.sawRegular = true
		if !validWireName(hf.Name) {
			hb.invalid = errBadFieldName
		}
	}
	if hb.invalid != nil {
		hb.dec.SetEmitEnabled(false)
		return
	}
	remain := &hb.headersRemain
	size := hf.Size()
	if hf.Name == "trailer" {
		remain = &hb.trailersRemain
		n := uint32(strings.Count(hf.Value, ",") + 1)
		size = uint32(len(hf.Value)) - n + 1 + n*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		hb.dec.SetEmitEnabled(false)
		hb.meta.Truncated = true
		hb.headersRemain, hb.trailersRemain = 0, 0
		return
	}
	*remain -= size
	hb.meta.Fields = append(hb.meta.Fields, hf)
}

// validWireName reports whether a regular field name is a token without
// upper-case letters.
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// readHeaderBlock decodes the block hf starts, reading its CONTINUATION
// frames, into the connection's MetaHeadersFrame, which is valid until
// the next call. On the reader goroutine.
func (c *conn) readHeaderBlock(hf *http2.HeadersFrame) (*http2.MetaHeadersFrame, error) {
	hb := &c.hb
	hb.begin(hf, c.s.maxHeaderList())
	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		if err := hb.add(frag); err != nil {
			return &hb.meta, err
		}
		if ended {
			return hb.end()
		}
		f, err := c.fr.ReadFrame() // a CONTINUATION of the same stream, or an error (the Framer checks the order)
		if err != nil {
			return nil, err
		}
		cf, ok := f.(*http2.ContinuationFrame)
		if !ok {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
}

// begin starts decoding the block hf opens, with limit the most bytes of
// fields (MaxHeaderListSize); the fragments follow by add (hf's own
// first), then end. A reader that gets frames one at a time (a loop)
// feeds each CONTINUATION's fragment to add as it comes.
func (hb *headerBlock) begin(hf *http2.HeadersFrame, limit uint32) {
	fields := hb.meta.Fields
	if cap(fields) > maxKeptFields {
		fields = nil
	}
	clear(fields[:cap(fields)]) // no strings of an earlier request kept
	hb.meta = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: fields[:0]}
	hb.headersRemain, hb.trailersRemain = limit, limit
	hb.sawRegular, hb.invalid = false, nil
	hb.dec.SetEmitEnabled(true)
	hb.dec.SetMaxStringLength(int(limit))
}

// add decodes one fragment of the block; an error is a ConnectionError
// (the connection ends).
func (hb *headerBlock) add(frag []byte) error {
	if int64(len(frag)) > 2*int64(hb.headersRemain+hb.trailersRemain) || hb.invalid != nil {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if _, err := hb.dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	return nil
}

// end finishes the block after its last fragment: the fields decoded, in
// a MetaHeadersFrame valid until the next begin, or a ConnectionError or a
// StreamError.
func (hb *headerBlock) end() (*http2.MetaHeadersFrame, error) {
	if err := hb.dec.Close(); err != nil {
		return &hb.meta, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if hb.invalid != nil {
		return nil, http2.StreamError{StreamID: hb.meta.StreamID, Code: http2.ErrCodeProtocol, Cause: hb.invalid}
	}
	if !pseudosValid(hb.meta.PseudoFields()) {
		return nil, http2.StreamError{StreamID: hb.meta.StreamID, Code: http2.ErrCodeProtocol, Cause: errBadPseudo}
	}
	return &hb.meta, nil
}

// pseudosValid reports whether pseudo-header fields are known, not
// repeated, and not request and response ones mixed.
func pseudosValid(pf []hpack.HeaderField) bool {
	var request, response bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return false
		}
		for _, prior := range pf[:i] {
			if prior.Name == hf.Name {
				return false
			}
		}
	}
	return !(request && response)
}
