package main

import "testing"

func TestParseWrkCountsCallsAndFailures(t *testing.T) {
	out := `Running 3s test @ http://127.0.0.1:1/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.04ms    1.10ms  20.01ms   90.00%
    Req/Sec    24.80k     1.20k   26.00k    70.00%
  74123 requests in 3.00s, 9.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec:  24707.66
Transfer/sec:      3.04MB
`
	r := parseWrk(out)
	if r["calls"] != 74123 || r["calls/s"] != 24707.66 || r["failures"] != 22 {
		t.Fatalf("parseWrk = %v; want 74123 calls, 24707.66/s, 22 failures", r)
	}
	if r := parseWrk("Requests/sec: 1\n"); r["calls"] != 0 || r["failures"] != 0 {
		t.Fatalf("a summary without requests gave %v", r)
	}
}
