package loopgrpc

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/status"
)

// Refuse answers a gRPC call with err's status and nothing else (a
// trailers-only answer), for a Fallback that refuses a call before
// grpc-go reads it.
func Refuse(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	for _, f := range statusFields(nil, err) {
		h.Set(f.Name, f.Value)
	}
	w.WriteHeader(http.StatusOK)
}

// statusFields appends err's status as grpc-status and grpc-message.
func statusFields(f []hpack.HeaderField, err error) []hpack.HeaderField {
	s := status.Convert(err)
	f = append(f, hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(s.Code()))})
	if m := s.Message(); m != "" {
		f = append(f, hpack.HeaderField{Name: "grpc-message", Value: encodeGRPCMessage(m)})
	}
	return f
}

// encodeGRPCMessage percent-encodes what grpc-message may not carry as
// is: bytes outside printable ASCII, and '%'.
func encodeGRPCMessage(m string) string {
	clean := true
	for i := 0; i < len(m); i++ {
		if b := m[i]; b < ' ' || b > '~' || b == '%' {
			clean = false
			break
		}
	}
	if clean {
		return m
	}
	var sb strings.Builder
	for i := 0; i < len(m); i++ {
		if b := m[i]; b < ' ' || b > '~' || b == '%' {
			fmt.Fprintf(&sb, "%%%02X", b)
		} else {
			sb.WriteByte(b)
		}
	}
	return sb.String()
}
