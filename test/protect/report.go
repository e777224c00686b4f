package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// second is one row of seconds.csv: the requests whose intended send
// time falls in that second of the run, and what became of them.
type second struct {
	sec                      int
	phase                    string
	offered, offHigh, offLow int
	admitted, admHigh        int
	admLow                   int
	rejected, errors         int
	timeouts                 int
	good, goodHigh, goodLow  int             // 2xx from the upstream within the goodput bound
	latHigh, latLow          []time.Duration // admitted, sorted
	signals                  map[string]float64
}

func perSecond(s *schedule, r *results, p plan, good time.Duration, sig map[int]map[string]float64) []*second {
	n := int(math.Ceil(p.total().Seconds()))
	rows := make([]*second, n)
	for i := range rows {
		rows[i] = &second{sec: i, phase: p[p.at(time.Duration(i)*time.Second)].name, signals: sig[i]}
	}
	for i, at := range s.at {
		row := rows[min(int(at/time.Second), n-1)]
		high := s.high[i]
		row.offered++
		if high {
			row.offHigh++
		} else {
			row.offLow++
		}
		switch r.out[i] {
		case outAdmitted:
			row.admitted++
			ok := r.status[i] >= 200 && r.status[i] < 300 && r.lat[i] <= good
			if ok {
				row.good++
			}
			if high {
				row.admHigh++
				row.latHigh = append(row.latHigh, r.lat[i])
				if ok {
					row.goodHigh++
				}
			} else {
				row.admLow++
				row.latLow = append(row.latLow, r.lat[i])
				if ok {
					row.goodLow++
				}
			}
		case outRejected:
			row.rejected++
		case outError:
			row.errors++
		case outTimeout:
			row.timeouts++
		}
	}
	for _, row := range rows {
		slices.Sort(row.latHigh)
		slices.Sort(row.latLow)
	}
	return rows
}

// target is one line of the summary's table.
type target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"` // NaN is written as null: not measurable
	Op    string  `json:"op"`    // >=, <=, >
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	Pass  bool    `json:"pass"`
	Note  string  `json:"note,omitempty"`
}

type summary struct {
	Date          string  `json:"date"`
	Workers       int     `json:"workers"`
	Service       string  `json:"service"`
	Policy        string  `json:"policy"`
	Front         string  `json:"front"` // gateway or nginx
	Arrivals      string  `json:"arrivals"`
	High          float64 `json:"high_share"`
	Base          float64 `json:"base"`
	Overload      float64 `json:"overload"`
	Phases        string  `json:"phases"`
	CapacityRPS   float64 `json:"capacity_rps"`
	NominalRPS    float64 `json:"nominal_rps"`
	NoLoadP50ms   float64 `json:"no_load_p50_ms"`
	NoLoadP99ms   float64 `json:"no_load_p99_ms"`
	NoLoadSamples int     `json:"no_load_samples"`
	GoodBoundMs   float64 `json:"goodput_bound_ms"`
	// No-load latency through the gateway (its warm-up, before the run).
	GatewayP50ms float64 `json:"gateway_no_load_p50_ms"`
	GatewayP99ms float64 `json:"gateway_no_load_p99_ms"`

	Requests    int            `json:"requests"`
	Admitted    int            `json:"admitted"`
	Rejected    int            `json:"rejected"`
	Errors      int            `json:"errors"`
	Timeouts    int            `json:"timeouts"`
	RejectedBy  map[string]int `json:"rejected_by"`
	ErrorsBy    map[string]int `json:"errors_by"`
	MaxInFlight int            `json:"max_in_flight"`
	LateShare   float64        `json:"late_send_share"` // sent over 10ms after the intended time
	// Seconds of the run at which the policy's SETPOINT was first valid
	// and its MULTIPLIER first below 1; -1 when never (or no signals).
	SetpointFrom   int `json:"setpoint_valid_from_s"`
	MultiplierFrom int `json:"multiplier_below_1_from_s"`
	// 1-minute load average of the machine at the start and end of the run.
	LoadAvg string `json:"load_average"`
	// The agent's tsdb.scrape_interval ("default" when not set), and the
	// CPU time (user + system) of the gateway or agent process while the
	// driver ran, in seconds; 0 when /proc could not be read.
	TSDBScrape string  `json:"tsdb_scrape_interval"`
	AgentCPUs  float64 `json:"agent_cpu_s"`

	Targets []target `json:"targets"`
}

func (s *summary) allPass() bool {
	for _, t := range s.Targets {
		if !t.Pass {
			return false
		}
	}
	return true
}

func summarize(rows []*second, p plan, c capacity, good time.Duration, r *results, sig map[int]map[string]float64) *summary {
	ov := p[1]
	ovFrom := int(math.Ceil((ov.from + time.Second).Seconds())) // goodput from 1s after the overload starts
	ovSteady := int(math.Ceil((ov.from + 5*time.Second).Seconds()))
	ovEnd := int(ov.to / time.Second) // first second after the overload (exclusive end)
	if ov.to%time.Second != 0 {
		ovEnd++
	}
	s := &summary{
		Date: time.Now().UTC().Format(time.RFC3339), Base: *base, Overload: *overload,
		Phases:      fmt.Sprintf("%s base, %s overload, %s base", p[0].to-p[0].from, ov.to-ov.from, p[2].to-p[2].from),
		CapacityRPS: c.rps, NominalRPS: float64(*workers) / service.Seconds(),
		NoLoadP50ms: ms(c.p50), NoLoadP99ms: ms(c.p99), NoLoadSamples: c.samples, GoodBoundMs: ms(good),
		RejectedBy: r.rejectedBy, ErrorsBy: r.errorsBy, MaxInFlight: r.maxInFlight,
		SetpointFrom: -1, MultiplierFrom: -1,
	}
	s.countOutcomes(r)
	s.signalTimes(sig)

	window := rows[min(ovFrom, len(rows)):min(ovEnd, len(rows))]
	goodSum, worst := 0, math.Inf(1)
	var admittedLat []time.Duration
	var offHigh, offAll, admHigh, admAll, goodHigh int
	for _, row := range window {
		goodSum += row.good
		worst = min(worst, float64(row.good))
		admittedLat = append(append(admittedLat, row.latHigh...), row.latLow...)
		offHigh += row.offHigh
		offAll += row.offered
		admHigh += row.admHigh
		admAll += row.admitted
		goodHigh += row.goodHigh
	}
	slices.Sort(admittedLat)
	s.add(target{Name: "goodput during overload (from +1s), % of capacity", Value: percent(float64(goodSum), float64(len(window))*c.rps), Op: ">=", Limit: 90, Unit: "%"})
	s.add(target{Name: "worst second's goodput during overload, % of capacity", Value: percent(worst, c.rps), Op: ">=", Limit: 50, Unit: "%"})
	p99 := math.NaN()
	if len(admittedLat) > 0 {
		p99 = ms(quantile(admittedLat, 0.99))
	}
	s.add(target{Name: "admitted p99 during overload, ms (limit 3 × no-load p99)", Value: p99, Op: "<=", Limit: 3 * ms(c.p99), Unit: "ms"})
	var steady []float64
	for _, row := range rows[min(ovSteady, len(rows)):min(ovEnd, len(rows))] {
		steady = append(steady, float64(row.admitted))
	}
	s.add(target{Name: "CV of admitted/s in steady overload (from +5s)", Value: cv(steady), Op: "<=", Limit: 0.1})
	rec := math.NaN()
	for _, row := range rows[min(ovEnd, len(rows)):] {
		if row.offered > 0 && float64(row.good) >= 0.95*float64(row.offered) {
			rec = float64(row.sec - ovEnd)
			break
		}
	}
	s.add(target{Name: "recovery: seconds after overload until one serves ≥ 95% of offered within the bound", Value: rec, Op: "<=", Limit: 2, Unit: "s",
		Note: map[bool]string{true: "never within the cool phase", false: ""}[math.IsNaN(rec)]})
	var rej, off int
	for _, row := range rows[:min(int(p[0].to/time.Second), len(rows))] {
		rej += row.rejected
		off += row.offered
	}
	s.add(target{Name: "rejected during the first base phase, % of offered", Value: percent(float64(rej), float64(off)), Op: "<=", Limit: 0.1, Unit: "%"})
	// Had high priority been admitted first, it would hold ideal of what
	// was admitted; a scheduler that ignores priority gives it its offered
	// share. The target is at least halfway from one to the other.
	offShare := percent(float64(offHigh), float64(offAll))
	ideal := percent(math.Min(float64(offHigh), float64(admAll)), float64(admAll))
	s.add(target{Name: "high priority's share of admitted during overload, % (limit: halfway from its offered share to high first)",
		Value: percent(float64(admHigh), float64(admAll)), Op: ">=", Limit: offShare + (ideal-offShare)/2, Unit: "%",
		Note: fmt.Sprintf("offered share %.1f%%, high first %.1f%%; high priority served within the bound: %.1f%% of its offered",
			offShare, ideal, percent(float64(goodHigh), float64(offHigh)))})
	var goodLow, offLow int
	for _, row := range rows[min(ovEnd+2, len(rows)):] {
		goodLow += row.goodLow
		offLow += row.offLow
	}
	s.add(target{Name: "low priority served within the bound after overload (from +2s), % of offered", Value: percent(float64(goodLow), float64(offLow)), Op: ">=", Limit: 95, Unit: "%"})
	return s
}

// countOutcomes counts the requests of r by outcome, and the share sent
// over 10ms after their intended time.
func (s *summary) countOutcomes(r *results) {
	late := 0
	for i, o := range r.out {
		switch o {
		case outAdmitted:
			s.Admitted++
		case outRejected:
			s.Rejected++
		case outError:
			s.Errors++
		case outTimeout:
			s.Timeouts++
		}
		if r.late[i] > 10*time.Millisecond {
			late++
		}
	}
	s.Requests = len(r.out)
	s.LateShare = float64(late) / float64(max(1, s.Requests))
}

// signalTimes finds the first second at which SETPOINT was valid and
// MULTIPLIER below 1 in sig (signal values by second of the run).
func (s *summary) signalTimes(sig map[int]map[string]float64) {
	for _, sec := range slices.Sorted(maps.Keys(sig)) {
		if _, ok := sig[sec]["SETPOINT"]; ok && s.SetpointFrom < 0 {
			s.SetpointFrom = sec
		}
		if m, ok := sig[sec]["MULTIPLIER"]; ok && m < 1 && s.MultiplierFrom < 0 {
			s.MultiplierFrom = sec
		}
	}
}

// add judges t and appends it to the targets. A value or limit that is
// not a number fails.
func (s *summary) add(t target) {
	switch {
	case math.IsNaN(t.Value) || math.IsNaN(t.Limit):
		t.Pass = false
		if math.IsNaN(t.Limit) {
			t.Limit = 0
		}
	case t.Op == ">=":
		t.Pass = t.Value >= t.Limit
	case t.Op == "<=":
		t.Pass = t.Value <= t.Limit
	case t.Op == ">":
		t.Pass = t.Value > t.Limit
	}
	s.Targets = append(s.Targets, t)
}

// percent is 100 a / b, NaN when b is 0.
func percent(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return 100 * a / b
}

// cv is the coefficient of variation (population standard deviation /
// mean) of xs.
func cv(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	if mean == 0 {
		return math.NaN()
	}
	var v float64
	for _, x := range xs {
		v += (x - mean) * (x - mean)
	}
	return math.Sqrt(v/float64(len(xs))) / mean
}

func (s *summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nplant: %d workers × %s, nominal %.0f req/s, measured capacity %.1f req/s; no-load p50 %.2f ms, p99 %.2f ms (%d samples)\n",
		s.Workers, s.Service, s.NominalRPS, s.CapacityRPS, s.NoLoadP50ms, s.NoLoadP99ms, s.NoLoadSamples)
	fmt.Fprintf(&b, "through the %s, no load: p50 %.2f ms, p99 %.2f ms\n", s.Front, s.GatewayP50ms, s.GatewayP99ms)
	fmt.Fprintf(&b, "policy: %s; load %.2g× then %.2g× then %.2g× capacity (%s), %s arrivals, %.0f%% high priority; goodput bound %.1f ms\n",
		s.Policy, s.Base, s.Overload, s.Base, s.Phases, s.Arrivals, 100*s.High, s.GoodBoundMs)
	fmt.Fprintf(&b, "requests %d: admitted %d, rejected %d, errors %d, timeouts %d; most in flight %d, sent over 10ms late %.2f%%\n",
		s.Requests, s.Admitted, s.Rejected, s.Errors, s.Timeouts, s.MaxInFlight, 100*s.LateShare)
	if len(s.RejectedBy) > 0 {
		fmt.Fprintf(&b, "rejections (status reason): %s\n", countList(s.RejectedBy))
	}
	if len(s.ErrorsBy) > 0 {
		fmt.Fprintf(&b, "errors: %s\n", countList(s.ErrorsBy))
	}
	fmt.Fprintf(&b, "machine load average (1 min) at start → end of the run: %s\n", s.LoadAvg)
	fmt.Fprintf(&b, "agent tsdb.scrape_interval %s; CPU of the %s process while driven: %.1f s\n", s.TSDBScrape, s.Front, s.AgentCPUs)
	fmt.Fprintf(&b, "circuit: SETPOINT valid from %s, MULTIPLIER below 1 from %s\n", secOrNever(s.SetpointFrom), secOrNever(s.MultiplierFrom))
	fmt.Fprintf(&b, "\n| target | value | limit | result |\n|---|---|---|---|\n")
	for _, t := range s.Targets {
		v := "n/a"
		if !math.IsNaN(t.Value) {
			v = strconv.FormatFloat(t.Value, 'f', 2, 64)
		}
		res := "FAIL"
		if t.Pass {
			res = "PASS"
		}
		note := ""
		if t.Note != "" {
			note = " (" + t.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s%s | %s %.2f | %s |\n", t.Name, v, note, t.Op, t.Limit, res)
	}
	return b.String()
}

func secOrNever(s int) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("t=%ds", s)
}

func countList(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var parts []string
	for i, k := range keys {
		if i == 6 {
			parts = append(parts, fmt.Sprintf("… %d more kinds", len(keys)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

var csvHeader = []string{"second", "phase", "offered", "admitted", "rejected", "errors", "timeouts", "goodput",
	"offered_high", "offered_low", "admitted_high", "admitted_low", "goodput_high", "goodput_low",
	"p50_high_ms", "p99_high_ms", "p50_low_ms", "p99_low_ms", "p99_ms",
	"signal_latency_ms", "signal_setpoint_ms", "signal_multiplier", "signal_latency_raw_ms"}

func writeOutputs(dir string, rows []*second, s *summary) error {
	f, err := os.Create(filepath.Join(dir, "seconds.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	for _, r := range rows {
		all := slices.Sorted(slices.Values(append(slices.Clone(r.latHigh), r.latLow...)))
		rec := []string{strconv.Itoa(r.sec), r.phase}
		for _, n := range []int{r.offered, r.admitted, r.rejected, r.errors, r.timeouts, r.good, r.offHigh, r.offLow, r.admHigh, r.admLow, r.goodHigh, r.goodLow} {
			rec = append(rec, strconv.Itoa(n))
		}
		for _, l := range []struct {
			lat []time.Duration
			q   float64
		}{{r.latHigh, 0.5}, {r.latHigh, 0.99}, {r.latLow, 0.5}, {r.latLow, 0.99}, {all, 0.99}} {
			rec = append(rec, latCell(l.lat, l.q))
		}
		for _, name := range signalNames {
			if v, ok := r.signals[name]; ok {
				rec = append(rec, strconv.FormatFloat(v, 'g', 4, 64))
			} else {
				rec = append(rec, "")
			}
		}
		_ = w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(s.text()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(jsonSummary(s), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return writePlot(filepath.Join(dir, "plot.png"), rows, s)
}

func latCell(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return ""
	}
	return strconv.FormatFloat(ms(quantile(sorted, q)), 'f', 2, 64)
}

// jsonSummary replaces NaN, which JSON cannot hold, by null.
func jsonSummary(s *summary) any {
	type jt struct {
		target
		Value *float64 `json:"value"`
	}
	out := struct {
		*summary
		Targets []jt `json:"targets"`
	}{summary: s}
	for _, t := range s.Targets {
		j := jt{target: t}
		if !math.IsNaN(t.Value) {
			v := t.Value
			j.Value = &v
		}
		out.Targets = append(out.Targets, j)
	}
	return out
}
