package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// Target is a performance goal and whether a run met it.
type Target struct {
	// Name says what is measured and the goal, e.g. "T_min/T at N=100 >= 0.8".
	Name string `json:"name"`
	// Measured is the measured value as text.
	Measured string `json:"measured"`
	// Met is whether the goal was reached.
	Met bool `json:"met"`
	// Note explains a measurement that could not be made, if any.
	Note string `json:"note,omitempty"`
}

// String renders the target as "target X: measured Y — met" (or "NOT met").
func (t Target) String() string {
	verdict := "met"
	if !t.Met {
		verdict = "NOT met"
	}
	s := fmt.Sprintf("target %s: measured %s — %s", t.Name, t.Measured, verdict)
	if t.Note != "" {
		s += " (" + t.Note + ")"
	}
	return s
}

// AtLeast returns a Target met when measured >= want; NaN is never met.
func AtLeast(name string, measured, want float64, format string) Target {
	return Target{Name: name, Measured: fmt.Sprintf(format, measured), Met: !math.IsNaN(measured) && measured >= want}
}

// AtMost returns a Target met when measured <= want; NaN is never met.
func AtMost(name string, measured, want float64, format string) Target {
	return Target{Name: name, Measured: fmt.Sprintf(format, measured), Met: !math.IsNaN(measured) && measured <= want}
}

// PrintTargets writes one line per target.
func PrintTargets(w io.Writer, ts []Target) {
	for _, t := range ts {
		fmt.Fprintln(w, t.String())
	}
}

// Table is a titled text table with aligned columns.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	// Notes are printed under the table.
	Notes []string
}

// AddRow appends a row of cells formatted with %v.
func (t *Table) AddRow(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.Rows = append(t.Rows, row)
}

// Fprint writes the table.
func (t *Table) Fprint(w io.Writer) {
	if t.Title != "" {
		fmt.Fprintf(w, "\n== %s ==\n", t.Title)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cells []string) {
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	line(t.Header)
	for _, r := range t.Rows {
		line(r)
	}
	tw.Flush()
	for _, n := range t.Notes {
		fmt.Fprintln(w, "  "+n)
	}
}

// WriteJSON writes v as indented JSON to dir/name.json (creating dir),
// through a temporary file renamed into place, and returns the path.
func WriteJSON(dir, name string, v any) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", name, err)
	}
	b = append(b, '\n')
	path := filepath.Join(dir, name+".json")
	tmp, err := os.CreateTemp(dir, "."+name+"-*.json")
	if err != nil {
		return "", err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}

// fmtSec renders seconds with millisecond precision, "-" for NaN or < 0.
func fmtSec(s float64) string {
	if math.IsNaN(s) || s < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", s)
}

// fmtMiB renders bytes in MiB.
func fmtMiB(b int64) string {
	return fmt.Sprintf("%.1fMiB", float64(b)/MiB)
}

// fmtRatio renders a ratio with two decimals, "-" for NaN.
func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// fmtPct renders a fraction as a percentage, "-" when negative.
func fmtPct(f float64) string {
	if f < 0 || math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

// fmtPerGiB renders seed and peers CPU seconds per GiB as "seed/peers",
// "-" when neither is known.
func fmtPerGiB(seed, peers float64) string {
	if seed <= 0 && peers <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f/%.2f", seed, peers)
}
