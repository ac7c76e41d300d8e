// Command ratio reads `go test -bench -benchmem` output of the proxy
// benchmarks on stdin, passes it through, and then prints each ftpsgate
// figure (the median of its runs with -count) beside its limit (the benchmark of the same name ending in
// /limit instead of /ftpsgate) with their ratio, and whether allocations
// grow with the size of a transfer. It exits 1 if the benchmarks failed.
//
//	go test -run '^$' -bench . -benchmem ./proxy/ | go run ./bench/ratio
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is one benchmark line: its metrics by unit (ns/op, MB/s,
// allocs/op, files/s...).
type result map[string]float64

// procSuffix is the -GOMAXPROCS suffix go test adds to names.
var procSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	results, failed, err := parse(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratio:", err)
		os.Exit(1)
	}
	report(os.Stdout, results)
	if failed || len(results) == 0 {
		fmt.Fprintln(os.Stderr, "ratio: the benchmarks failed or printed nothing")
		os.Exit(1)
	}
}

// parse copies r to echo and collects the benchmark lines by name.
func parse(r io.Reader, echo io.Writer) (map[string]result, bool, error) {
	results, runs := map[string]result{}, map[string][]result{}
	failed := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			failed = true
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		res := result{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res[f[i+1]] = v
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		runs[name] = append(runs[name], res)
	}
	for name, rs := range runs {
		results[name] = median(rs)
	}
	return results, failed, sc.Err()
}

// median is, for each metric, its median over the runs of one benchmark
// (go test -count N): one noisy run does not make the figure.
func median(rs []result) result {
	m := result{}
	for unit := range rs[0] {
		var vs []float64
		for _, r := range rs {
			if v, ok := r[unit]; ok {
				vs = append(vs, v)
			}
		}
		sort.Float64s(vs)
		m[unit] = vs[len(vs)/2]
	}
	return m
}

// report prints the table of ratios and the allocation check.
func report(w io.Writer, results map[string]result) {
	var names []string
	for name := range results {
		if strings.HasSuffix(name, "/ftpsgate") {
			names = append(names, strings.TrimSuffix(name, "/ftpsgate"))
		}
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "benchmark\tunit\tlimit\tftpsgate\tratio\t")
	for _, name := range names {
		lim, got := results[name+"/limit"], results[name+"/ftpsgate"]
		if lim == nil {
			continue
		}
		unit := figureUnit(got)
		l, g := lim[unit], got[unit]
		ratio := g / l
		if unit == "ns/op" { // lower is better: the ratio is the speed's
			ratio = l / g
			l, g, unit = l/1e6, g/1e6, "ms/op"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.2f\t\n", strings.TrimPrefix(name, "Benchmark"), unit, l, g, ratio)
	}
	tw.Flush()
	fmt.Fprintln(w, "(ratio > 1: ftpsgate faster than its limit)")
	allocCheck(w, results)
}

// figureUnit is the metric a benchmark is judged by.
func figureUnit(r result) string {
	for _, u := range []string{"files/s", "MB/s"} {
		if _, ok := r[u]; ok {
			return u
		}
	}
	return "ns/op"
}

// allocCheck compares allocations per op of the largest and the smallest
// size of each data benchmark: a copy loop that allocates per chunk makes
// them grow with the size. crypto/tls allocates 32 bytes per record it
// reads (atLeastReader in Conn.readFromUntil), at whichever end decrypts,
// so a PROT P limit grows too; ftpsgate must grow no more than its limit,
// and a PROT C limit (splice, no TLS) not at all.
func allocCheck(w io.Writer, results map[string]result) {
	const small, large, mibs = "/1MiB/", "/256MiB/", 255.0
	growth := func(name string) (float64, bool) {
		big, ok1 := results[name]["allocs/op"]
		little, ok2 := results[strings.Replace(name, large, small, 1)]["allocs/op"]
		return (big - little) / mibs, ok1 && ok2
	}
	var names []string
	for name := range results {
		if strings.Contains(name, large) && strings.HasSuffix(name, "/ftpsgate") {
			names = append(names, strings.TrimSuffix(name, "/ftpsgate"))
		}
	}
	sort.Strings(names)
	fmt.Fprintln(w, "\nallocations per MiB, 256 MiB against 1 MiB:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "benchmark\tlimit\tftpsgate\t\t")
	for _, name := range names {
		g, ok1 := growth(name + "/ftpsgate")
		l, ok2 := growth(name + "/limit")
		if !ok1 || !ok2 {
			continue
		}
		verdict := "ok"
		if g-l > 2 || (strings.Contains(name, "/protC/") && l > 2) {
			verdict = "ALLOCATES PER CHUNK"
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%s\t\n", strings.TrimPrefix(name, "Benchmark"), l, g, verdict)
	}
	tw.Flush()
	fmt.Fprintln(w, "(crypto/tls allocates once per record it reads: a PROT P limit grows by about 30-60 per MiB)")
}
