package qemu

import "time"

func rdtsc() uint64

// calibrateTSC measures the TSC against the monotonic clock over 20 ms.
func calibrateTSC() uint64 {
	t0, c0 := time.Now(), rdtsc()
	time.Sleep(20 * time.Millisecond)
	t1, c1 := time.Now(), rdtsc()
	ns := t1.Sub(t0).Nanoseconds()
	if ns <= 0 || c1 <= c0 {
		return 0
	}
	return (c1 - c0) * 1_000_000 / uint64(ns)
}
