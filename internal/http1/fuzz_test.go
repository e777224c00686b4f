package http1

import "testing"

// The fuzz targets hold the readers to net/http (diff_test.go): a head or
// body this package accepts must mean the same to net/http, so that the
// gateway and a target cannot disagree on where a message ends.

func FuzzParseRequest(f *testing.F) {
	for _, c := range requestCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRequest(t, b)
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, c := range responseCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkResponse(t, b)
	})
}

// FuzzChunked scans a body in the pieces splits cuts it into.
func FuzzChunked(f *testing.F) {
	for _, c := range chunkedCases {
		f.Add([]byte(c.in), []byte{3, 0, 9})
	}
	f.Fuzz(func(t *testing.T, body, splits []byte) {
		checkChunked(t, body, splits)
	})
}
