package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want unix.Signal
		bad  bool
	}{
		{"9", unix.SIGKILL, false},
		{"KILL", unix.SIGKILL, false},
		{"SIGTERM", unix.SIGTERM, false},
		{"term", unix.SIGTERM, false},
		{"USR1", unix.SIGUSR1, false},
		{"RTMIN+1", 35, false},
		{"FOO", 0, true},
		{"0", 0, true},
		{"65", 0, true},
		{"-1", 0, true},
	} {
		got, err := parseSignal(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseSignal(%q) = %v, %v", tc.in, got, err)
		}
	}
}
