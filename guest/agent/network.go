package agent

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// configureNetwork gives each guest NIC (found by the MAC QEMU gave it) the
// name, MAC, MTU and addresses of the host interface it mirrors, then adds the
// routes. The container shares the VM's network namespace.
func configureNetwork(req *protocol.NetworkRequest) error {
	if len(req.Interfaces) > 16 || len(req.Routes) > 256 {
		return errors.New("network: too many interfaces or routes")
	}
	// The kernel named the NICs eth0, eth1, …, in its own order; the host's
	// names may be the same ones swapped. Move every NIC out of the way first.
	names := map[string]bool{}
	for i, iface := range req.Interfaces {
		if names[iface.Name] {
			return fmt.Errorf("network: interface name %q given twice", iface.Name)
		}
		names[iface.Name] = true
		link, err := linkByMAC(iface.GuestMAC)
		if err != nil {
			return fmt.Errorf("network: %s: %w", iface.Name, err)
		}
		if err := netlink.LinkSetDown(link); err != nil {
			return err
		}
		if err := netlink.LinkSetName(link, fmt.Sprintf("kbnic%d", i)); err != nil {
			return fmt.Errorf("network: %s: rename: %w", iface.Name, err)
		}
	}
	for _, iface := range req.Interfaces {
		if err := configureInterface(iface); err != nil {
			return fmt.Errorf("network: %s: %w", iface.Name, err)
		}
	}
	for _, r := range req.Routes {
		if err := addRoute(r); err != nil {
			return fmt.Errorf("network: route %+v: %w", r, err)
		}
	}
	for _, mac := range req.Park {
		if err := park(mac); err != nil {
			return fmt.Errorf("network: park %s: %w", mac, err)
		}
	}
	return nil
}

// parkingNS is a network namespace of the guest that nothing uses, where
// NICs with nothing to mirror go so that the container sees only lo.
var parkingNS = struct {
	sync.Once
	fd  int
	err error
}{fd: -1}

func park(mac string) error {
	link, err := linkByMAC(mac)
	if err != nil {
		return err
	}
	parkingNS.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			// This thread leaves the VM's namespace for good: never unlocked.
			runtime.LockOSThread()
			if parkingNS.err = unix.Unshare(unix.CLONE_NEWNET); parkingNS.err != nil {
				return
			}
			parkingNS.fd, parkingNS.err = unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		}()
		<-done
	})
	if parkingNS.err != nil {
		return parkingNS.err
	}
	return netlink.LinkSetNsFd(link, parkingNS.fd)
}

func linkByMAC(mac string) (netlink.Link, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == want.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no NIC with MAC %s", mac)
}

func validIfName(n string) bool {
	return n != "" && len(n) < 16 && !strings.ContainsAny(n, "/ \x00:") && n != "." && n != ".."
}

func configureInterface(iface protocol.Interface) error {
	link, err := linkByMAC(iface.GuestMAC)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return err
	}
	if validIfName(iface.Name) && link.Attrs().Name != iface.Name {
		if err := netlink.LinkSetName(link, iface.Name); err != nil {
			return fmt.Errorf("rename: %w", err)
		}
	}
	if iface.MAC != "" && iface.MAC != iface.GuestMAC {
		mac, err := net.ParseMAC(iface.MAC)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set MAC: %w", err)
		}
	}
	if iface.MTU >= 68 && iface.MTU <= 65535 {
		if err := netlink.LinkSetMTU(link, iface.MTU); err != nil {
			return fmt.Errorf("set MTU: %w", err)
		}
	}
	for _, a := range iface.Addresses {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("add address %s: %w", a, err)
		}
	}
	return netlink.LinkSetUp(link)
}

func addRoute(r protocol.Route) error {
	route := &netlink.Route{Scope: netlink.Scope(r.Scope)}
	if r.Device != "" {
		link, err := netlink.LinkByName(r.Device)
		if err != nil {
			return err
		}
		route.LinkIndex = link.Attrs().Index
	}
	if r.Destination != "" {
		_, dst, err := net.ParseCIDR(r.Destination)
		if err != nil {
			return err
		}
		route.Dst = dst
	}
	if r.Gateway != "" {
		if route.Gw = net.ParseIP(r.Gateway); route.Gw == nil {
			return fmt.Errorf("bad gateway %q", r.Gateway)
		}
	}
	if r.Source != "" {
		route.Src = net.ParseIP(r.Source)
	}
	return netlink.RouteReplace(route)
}
