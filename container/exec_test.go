package container

import (
	"reflect"
	"testing"
)

func TestDedupEnv(t *testing.T) {
	got := dedupEnv([]string{"PATH=/bin", "A=1", "TERM=xterm", "A=2", "B", "TERM=dumb", "B=3"})
	want := []string{"PATH=/bin", "A=2", "TERM=dumb", "B=3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dedupEnv = %q, want %q", got, want)
	}
	if got := dedupEnv(nil); len(got) != 0 {
		t.Errorf("dedupEnv(nil) = %q", got)
	}
}
