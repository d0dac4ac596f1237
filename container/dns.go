package container

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxResolvConf bounds how much of a resolv.conf is read.
const maxResolvConf = 64 << 10

// resolvConfSource is the host file the spec binds at /etc/resolv.conf.
func resolvConfSource(spec *specs.Spec) string {
	var src string
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/etc/resolv.conf" && m.Source != "" {
			src = m.Source // the last mount wins, as in the mount table
		}
	}
	return src
}

// dnsRelayServers returns the loopback nameservers of the resolv.conf at
// src. Such a server answers only inside the host's network namespace
// (docker's embedded DNS NATs 127.0.0.11:53 to its resolver there), so the
// guest relays queries for it to the shim. Docker writes 127.0.0.11 into the
// file only in its prestart hook: read it when the network is connected.
func dnsRelayServers(src string) []string {
	if src == "" {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil
	}
	defer f.Close()
	return loopbackNameservers(io.LimitReader(f, maxResolvConf))
}

func loopbackNameservers(r io.Reader) []string {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip := net.ParseIP(f[1])
		if ip == nil || !ip.IsLoopback() || seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		out = append(out, ip.String())
		if len(out) == 3 { // resolv(5): at most three are used
			break
		}
	}
	return out
}
