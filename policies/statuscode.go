package policies

import (
	"net/http"
	"strings"
)

// statusCodeNames maps the names of HTTP status codes in Aperture's (and
// Envoy's) StatusCode enum, such as BadRequest and TooManyRequests, to
// their numbers.
var statusCodeNames = func() map[string]int {
	m := map[string]int{
		// Where the enum's name is not http.StatusText's without spaces.
		"PayloadTooLarge":     http.StatusRequestEntityTooLarge,
		"URITooLong":          http.StatusRequestURITooLong,
		"RangeNotSatisfiable": http.StatusRequestedRangeNotSatisfiable,
	}
	for code := 100; code < 600; code++ {
		text := http.StatusText(code)
		if text == "" || code == http.StatusTeapot {
			continue
		}
		name := strings.NewReplacer(" ", "", "-", "", "'", "").Replace(text)
		if _, dup := m[name]; !dup {
			m[name] = code
		}
	}
	return m
}()

// StatusCodeByName returns the number of an HTTP status code given by its
// Aperture name, such as "BadRequest" (400) or "TooManyRequests" (429).
func StatusCodeByName(name string) (int, bool) {
	code, ok := statusCodeNames[name]
	return code, ok
}
