package container

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLoopbackNameservers(t *testing.T) {
	in := `# docker user-defined network
search example.com
nameserver 127.0.0.11
nameserver 10.0.0.2
nameserver ::1
nameserver 127.0.0.11
nameserver bogus
options ndots:0
`
	got := loopbackNameservers(strings.NewReader(in))
	if want := []string{"127.0.0.11", "::1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := loopbackNameservers(strings.NewReader("nameserver 8.8.8.8\n")); got != nil {
		t.Fatalf("non-loopback servers need no relay, got %v", got)
	}
}

func TestDNSRelayServersFromSpec(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("nameserver 127.0.0.11\n"), 0o644)
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/etc/hosts", Source: "/etc/hosts", Type: "bind"},
		{Destination: "/etc//resolv.conf", Source: rc, Type: "bind"},
	}}
	if got := dnsRelayServers(resolvConfSource(spec)); !reflect.DeepEqual(got, []string{"127.0.0.11"}) {
		t.Fatalf("got %v", got)
	}
	spec.Mounts[1].Source = filepath.Join(dir, "missing")
	if got := dnsRelayServers(resolvConfSource(spec)); got != nil {
		t.Fatalf("a missing file relays nothing, got %v", got)
	}
}
