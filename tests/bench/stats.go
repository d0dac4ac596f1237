package main

import (
	"fmt"
	"sort"
	"time"
)

// durations is a set of timed runs.
type durations []time.Duration

func (d durations) sorted() durations {
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// median is the middle run (the mean of the two middle ones for an even
// count); 0 for no runs.
func (d durations) median() time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d.sorted()
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (d durations) min() time.Duration { return d.sorted()[0] }
func (d durations) max() time.Duration { return d.sorted()[len(d)-1] }

// ms formats a duration in milliseconds, with one decimal below 10 ms.
func ms(d time.Duration) string {
	v := float64(d) / 1e6
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// spread is "median [min–max]".
func (d durations) spread() string {
	if len(d) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s [%s–%s]", ms(d.median()), trimUnit(ms(d.min())), trimUnit(ms(d.max())))
}

func trimUnit(s string) string { return s[:len(s)-3] }

// ratio is a/b, or 0 when either is missing.
func ratio(a, b time.Duration) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func fmtRatio(r float64) string {
	if r <= 0 {
		return "n/a"
	}
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// medianFloat is the median of xs (0 for none).
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// mib formats KiB as MiB.
func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
