// Command benchratio reads `go test -bench` output on stdin, passes it
// through, and then prints each benchmark beside its baseline: a
// sub-benchmark whose last name element starts with "baseline" is the
// baseline of its siblings (BenchmarkX/case/baseline=goavro vs
// BenchmarkX/case/omnisync); with several baselines among siblings, each
// benchmark is printed beside each of them. With -json FILE it also writes
// the table as JSON, so runs of two commits can be compared.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
)

type result struct {
	name    string
	metrics map[string]float64 // unit → value
	units   []string
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(line string) (result, bool) {
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
		return result{}, false
	}
	r := result{name: procSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), ""), metrics: map[string]float64{}}
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return result{}, false
		}
		r.metrics[fields[i+1]] = v
		r.units = append(r.units, fields[i+1])
	}
	return r, true
}

// row is one line of the table.
type row struct {
	Benchmark     string  `json:"benchmark"`
	Baseline      string  `json:"baseline"`
	Metric        string  `json:"metric"`
	Value         float64 `json:"value"`
	BaselineValue float64 `json:"baseline_value"`
	Ratio         float64 `json:"ratio"`
}

func main() {
	jsonFile := flag.String("json", "", "also write the table to this file as JSON")
	flag.Parse()
	var results []result
	sc := bufio.NewScanner(io.TeeReader(os.Stdin, os.Stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if r, ok := parse(sc.Text()); ok {
			results = append(results, r)
		}
	}
	baselines := map[string][]result{}
	for _, r := range results {
		parent, last := split(r.name)
		if strings.HasPrefix(last, "baseline") {
			baselines[parent] = append(baselines[parent], r)
		}
	}
	if len(baselines) == 0 {
		return
	}
	var rows []row
	for _, r := range results {
		parent, last := split(r.name)
		if strings.HasPrefix(last, "baseline") {
			continue
		}
		for _, base := range baselines[parent] {
			_, baseName := split(base.name)
			for _, unit := range r.units {
				bv, ok := base.metrics[unit]
				if !ok || bv == 0 {
					continue
				}
				rows = append(rows, row{Benchmark: r.name, Baseline: strings.TrimPrefix(strings.TrimPrefix(baseName, "baseline"), "="),
					Metric: unit, Value: r.metrics[unit], BaselineValue: bv, Ratio: r.metrics[unit] / bv})
			}
		}
	}
	fmt.Println("\nRatios against the baseline run side by side (for ns/op, B/op, allocs/op lower is better; for rates such as events/s higher is better):")
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tBASELINE\tMETRIC\tVALUE\tBASELINE VALUE\tRATIO")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.4g\t%.4g\t%.2fx\n", r.Benchmark, r.Baseline, r.Metric, r.Value, r.BaselineValue, r.Ratio)
	}
	tw.Flush()
	if *jsonFile != "" {
		b, err := json.MarshalIndent(rows, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchratio:", err)
			os.Exit(1)
		}
		fmt.Println("The table as JSON:", *jsonFile)
	}
}

func split(name string) (parent, last string) {
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}
