package network

import (
	"reflect"
	"testing"
)

func TestPair(t *testing.T) {
	for _, c := range []struct {
		name            string
		nics, ifaces    []string
		pairs, unpaired []int
	}{
		{"nothing yet", []string{"aa"}, nil, []int{-1}, nil},
		{"one, MAC unknown at create", []string{"02:00:00:00:00:01"}, []string{"de:ad:be:ef:00:01"}, []int{0}, nil},
		{"by MAC first", []string{"a", "b"}, []string{"B", "A"}, []int{1, 0}, nil},
		{"rest in order", []string{"a", "x", "y"}, []string{"c", "a", "d"}, []int{1, 0, 2}, nil},
		{"more interfaces than NICs", []string{"x"}, []string{"c", "d"}, []int{0}, []int{1}},
		{"fewer interfaces than NICs", []string{"x", "y"}, []string{"y"}, []int{-1, 0}, nil},
	} {
		p, u := Pair(c.nics, c.ifaces)
		if !reflect.DeepEqual(p, c.pairs) || !reflect.DeepEqual(u, c.unpaired) {
			t.Errorf("%s: got %v %v, want %v %v", c.name, p, u, c.pairs, c.unpaired)
		}
	}
}

func TestTapName(t *testing.T) {
	if TapName(0) != "kbtap0" || TapName(7) != "kbtap7" {
		t.Fatal(TapName(0), TapName(7))
	}
}
