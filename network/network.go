// Package network connects a container's VM to the network its caller set up
// in the container's host network namespace (docker's veth, CNI's, podman's
// netavark). It follows Kata's tcfilter model: QEMU's tap device and the
// caller's interface sit side by side in the namespace, and tc ingress
// filters redirect every frame from one to the other, both ways. The guest
// NIC takes the interface's MAC, MTU, addresses and routes. Host only; every
// function works on the network namespace of the calling thread (use
// netns.Do).
package network

import (
	"crypto/rand"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// MaxNICs bounds the NICs of one VM.
const MaxNICs = 8

// TapName is the tap QEMU opens for the container's NIC number i.
func TapName(i int) string { return fmt.Sprintf("kbtap%d", i) }

// RandomMAC returns a locally administered unicast MAC.
func RandomMAC() string {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b).String()
}

// Candidates returns the interfaces guest NICs should mirror: every
// non-loopback, non-tap interface, in index order (none yet is not an error).
func Candidates() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || strings.HasPrefix(a.Name, "kbtap") || l.Type() == "tuntap" {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// Pair assigns interfaces to guest NICs: an interface goes to the NIC that
// already has its MAC, the rest to the free NICs in order. It returns, per
// NIC, the index of its interface or -1, and the interfaces left without one.
func Pair(nicMACs, ifaceMACs []string) (pairs []int, unpaired []int) {
	pairs = make([]int, len(nicMACs))
	taken := make([]bool, len(ifaceMACs))
	for n, mac := range nicMACs {
		pairs[n] = -1
		for i, im := range ifaceMACs {
			if !taken[i] && strings.EqualFold(im, mac) {
				pairs[n], taken[i] = i, true
				break
			}
		}
	}
	for n := range pairs {
		if pairs[n] >= 0 {
			continue
		}
		for i := range ifaceMACs {
			if !taken[i] {
				pairs[n], taken[i] = i, true
				break
			}
		}
	}
	for i, t := range taken {
		if !t {
			unpaired = append(unpaired, i)
		}
	}
	return pairs, unpaired
}

// Describe reads what the guest needs to mirror link: its MAC, MTU,
// addresses and the namespace's routes through it.
func Describe(link netlink.Link, guestMAC string) (*protocol.NetworkRequest, error) {
	a := link.Attrs()
	iface := protocol.Interface{GuestMAC: guestMAC, Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			continue // the guest makes its own
		}
		iface.Addresses = append(iface.Addresses, ad.IPNet.String())
	}
	req := &protocol.NetworkRequest{Interfaces: []protocol.Interface{iface}}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", a.Name, err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue // follows from the addresses
		}
		if r.Dst != nil && r.Dst.IP.IsLinkLocalMulticast() || r.Dst != nil && r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		rt := protocol.Route{Device: a.Name, Scope: int(r.Scope)}
		if r.Dst != nil {
			rt.Destination = r.Dst.String()
		}
		if r.Gw != nil {
			rt.Gateway = r.Gw.String()
		}
		if r.Src != nil {
			rt.Source = r.Src.String()
		}
		req.Routes = append(req.Routes, rt)
	}
	return req, nil
}

// Mirror redirects all traffic between link and the tap, both ways, with an
// ingress qdisc and a match-all u32 filter carrying a mirred redirect on each.
func Mirror(link netlink.Link, tapName string) error {
	tap, err := netlink.LinkByName(tapName)
	if err != nil {
		return fmt.Errorf("find %s: %w", tapName, err)
	}
	if err := netlink.LinkSetMTU(tap, link.Attrs().MTU); err != nil {
		return fmt.Errorf("set %s mtu: %w", tapName, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return fmt.Errorf("bring %s up: %w", tapName, err)
	}
	if err := redirect(link, tap); err != nil {
		return err
	}
	return redirect(tap, link)
}

func redirect(from, to netlink.Link) error {
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(ingress); err != nil && err != unix.EEXIST {
		return fmt.Errorf("add ingress qdisc to %s: %w", from.Attrs().Name, err)
	}
	mirred := netlink.NewMirredAction(to.Attrs().Index)
	mirred.MirredAction = netlink.TCA_EGRESS_REDIR
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		ClassId: netlink.MakeHandle(1, 1),
		Actions: []netlink.Action{mirred},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}
