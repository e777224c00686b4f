package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// ReadInputs reads a recording: a header row of signal names (a first
// column named time_s or tick is ignored), then one row per tick. An empty
// cell, NaN or "invalid" is an invalid signal.
func ReadInputs(r io.Reader) ([]map[string]float64, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("sim: inputs header: %w", err)
	}
	skip := len(header) > 0 && (header[0] == "time_s" || header[0] == "tick")
	var rows []map[string]float64
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sim: inputs: %w", err)
		}
		row := map[string]float64{}
		for i, cell := range rec {
			if (skip && i == 0) || i >= len(header) {
				continue
			}
			cell = strings.TrimSpace(cell)
			if cell == "" || strings.EqualFold(cell, "invalid") {
				row[header[i]] = math.NaN()
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil {
				return nil, fmt.Errorf("sim: inputs line %d, column %s: %q is not a number", line, header[i], cell)
			}
			row[header[i]] = v
		}
		rows = append(rows, row)
	}
}

// WriteCSV writes the table as CSV; invalid values are empty cells.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	for _, row := range t.Rows {
		rec := make([]string, len(row))
		for i, v := range row {
			if !math.IsNaN(v) {
				rec[i] = strconv.FormatFloat(v, 'g', 6, 64)
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTable writes the table aligned for people; invalid values are "-".
func (t *Table) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.Columns, "\t")+"\t")
	for _, row := range t.Rows {
		for _, v := range row {
			if math.IsNaN(v) {
				fmt.Fprint(tw, "-\t")
			} else {
				fmt.Fprint(tw, strconv.FormatFloat(v, 'g', 5, 64)+"\t")
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
