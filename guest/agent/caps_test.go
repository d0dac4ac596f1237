package agent

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCapMask(t *testing.T) {
	mask, unknown := capMask([]string{"CAP_CHOWN", "cap_kill", "CAP_SYS_ADMIN", "CAP_NOPE", "CAP_BPF"}, 40)
	want := uint64(1<<0 | 1<<5 | 1<<21 | 1<<39)
	if mask != want || !reflect.DeepEqual(unknown, []string{"CAP_NOPE"}) {
		t.Fatalf("mask %#x unknown %v, want %#x [CAP_NOPE]", mask, unknown, want)
	}
	// A kernel whose last capability is 37 lacks CAP_BPF (39).
	mask, unknown = capMask([]string{"CAP_BPF", "CAP_AUDIT_READ"}, 37)
	if mask != 1<<37 || !reflect.DeepEqual(unknown, []string{"CAP_BPF"}) {
		t.Fatalf("old kernel: mask %#x unknown %v", mask, unknown)
	}
}

func TestCapNamesComplete(t *testing.T) {
	seen := map[int]string{}
	for n, c := range capNames {
		if other, dup := seen[c]; dup {
			t.Errorf("%s and %s share number %d", n, other, c)
		}
		seen[c] = n
	}
	for c := 0; c <= 40; c++ {
		if _, ok := seen[c]; !ok {
			t.Errorf("capability %d has no name", c)
		}
	}
}

func TestResolveCaps(t *testing.T) {
	c := &specs.LinuxCapabilities{
		Bounding:  []string{"CAP_KILL", "CAP_BOGUS"},
		Effective: []string{"CAP_KILL"},
		Permitted: []string{"CAP_KILL", "CAP_BOGUS"},
		Ambient:   []string{"CAP_NET_BIND_SERVICE"},
	}
	m, unknown := resolveCaps(c, 40)
	if m.bounding != 1<<5 || m.effective != 1<<5 || m.permitted != 1<<5 || m.inheritable != 0 || m.ambient != 1<<10 {
		t.Fatalf("masks %+v", m)
	}
	if !reflect.DeepEqual(unknown, []string{"CAP_BOGUS"}) {
		t.Fatalf("unknown %v (each name once)", unknown)
	}
}
