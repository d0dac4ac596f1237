package agent

import (
	"fmt"
	"strings"
	"testing"
)

func TestRenamePlan(t *testing.T) {
	const a, b, c = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
	for name, tc := range map[string]struct {
		current map[string]string
		want    []rename
		plan    string
	}{
		"docker: already eth0": {map[string]string{a: "eth0"}, []rename{{a, "eth0"}}, "[]"},
		"free name":            {map[string]string{a: "eth0"}, []rename{{a, "ens5"}}, "[{a ens5}]"},
		"invalid name kept":    {map[string]string{a: "eth0"}, []rename{{a, "bad/name"}}, "[]"},
		"swapped names": {map[string]string{a: "eth0", b: "eth1"}, []rename{{a, "eth1"}, {b, "eth0"}},
			"[{a kbnic0} {b kbnic1} {a eth1} {b eth0}]"},
		"one moves onto a name another keeps": {map[string]string{a: "eth0", b: "eth1", c: "eth2"},
			[]rename{{a, "eth0"}, {b, "eth2"}, {c, "net1"}}, "[{b kbnic0} {c kbnic1} {b eth2} {c net1}]"},
	} {
		got := fmt.Sprint(renamePlan(tc.current, tc.want))
		for mac, short := range map[string]string{a: "a", b: "b", c: "c"} {
			got = strings.ReplaceAll(got, mac, short)
		}
		if got != tc.plan {
			t.Errorf("%s: plan %s, want %s", name, got, tc.plan)
		}
	}
}
