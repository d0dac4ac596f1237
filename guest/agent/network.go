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
// routes. The container shares the VM's network namespace. Under emulation
// every netlink change runs cold kernel code (a rename alone re-registers the
// device's sysctls: ~25 ms), so only what differs is changed.
func configureNetwork(req *protocol.NetworkRequest) error {
	if len(req.Interfaces) > 16 || len(req.Routes) > 256 {
		return errors.New("network: too many interfaces or routes")
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	byMAC := map[string]netlink.Link{}
	names := map[string]string{} // MAC -> current name
	for _, l := range links {
		if m := l.Attrs().HardwareAddr.String(); m != "" {
			byMAC[m] = l
			names[m] = l.Attrs().Name
		}
	}
	find := func(mac string) (netlink.Link, error) {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return nil, err
		}
		if l, ok := byMAC[hw.String()]; ok {
			return l, nil
		}
		return nil, fmt.Errorf("no NIC with MAC %s", mac)
	}
	seen := map[string]bool{}
	want := make([]rename, 0, len(req.Interfaces))
	nics := make([]netlink.Link, len(req.Interfaces))
	for i, iface := range req.Interfaces {
		if seen[iface.Name] {
			return fmt.Errorf("network: interface name %q given twice", iface.Name)
		}
		seen[iface.Name] = true
		if nics[i], err = find(iface.GuestMAC); err != nil {
			return fmt.Errorf("network: %s: %w", iface.Name, err)
		}
		want = append(want, rename{nics[i].Attrs().HardwareAddr.String(), iface.Name})
	}
	down := map[int]bool{}
	setDown := func(l netlink.Link) error {
		if l.Attrs().Flags&net.FlagUp == 0 || down[l.Attrs().Index] {
			return nil
		}
		down[l.Attrs().Index] = true
		return netlink.LinkSetDown(l)
	}
	for _, step := range renamePlan(names, want) {
		l := byMAC[step.mac]
		if err := setDown(l); err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, step.name); err != nil {
			return fmt.Errorf("network: rename %s to %s: %w", names[step.mac], step.name, err)
		}
	}
	for i, iface := range req.Interfaces {
		if err := configureInterface(nics[i], iface, setDown); err != nil {
			return fmt.Errorf("network: %s: %w", iface.Name, err)
		}
	}
	for _, r := range req.Routes {
		if err := addRoute(r); err != nil {
			return fmt.Errorf("network: route %+v: %w", r, err)
		}
	}
	for _, mac := range req.Park {
		l, err := find(mac)
		if err == nil {
			err = park(l)
		}
		if err != nil {
			return fmt.Errorf("network: park %s: %w", mac, err)
		}
	}
	return nil
}

// rename gives the NIC with MAC mac the name name.
type rename struct{ mac, name string }

// renamePlan returns the renames that give each NIC in want its name, given
// the current names by MAC: none for a NIC already named right, a direct
// rename when the name is free, and otherwise (names swapped between NICs)
// every NIC to rename goes to a temporary kbnic<i> first.
func renamePlan(current map[string]string, want []rename) []rename {
	taken := map[string]bool{}
	for _, n := range current {
		taken[n] = true
	}
	var needs []rename
	clash := false
	for _, w := range want {
		if !validIfName(w.name) || current[w.mac] == w.name {
			continue
		}
		needs = append(needs, w)
		clash = clash || taken[w.name]
	}
	if !clash {
		return needs
	}
	plan := make([]rename, 0, 2*len(needs))
	for i, w := range needs {
		plan = append(plan, rename{w.mac, fmt.Sprintf("kbnic%d", i)})
	}
	return append(plan, needs...)
}

// parkingNS is a network namespace of the guest that nothing uses, where
// NICs with nothing to mirror go so that the container sees only lo.
var parkingNS = struct {
	sync.Once
	fd  int
	err error
}{fd: -1}

func park(link netlink.Link) error {
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

func validIfName(n string) bool {
	return n != "" && len(n) < 16 && !strings.ContainsAny(n, "/ \x00:") && n != "." && n != ".."
}

// configureInterface gives link the host interface's MAC, MTU and
// addresses (it has its name already) and brings it up.
func configureInterface(link netlink.Link, iface protocol.Interface, setDown func(netlink.Link) error) error {
	if iface.MAC != "" {
		mac, err := net.ParseMAC(iface.MAC)
		if err != nil {
			return err
		}
		if mac.String() != link.Attrs().HardwareAddr.String() {
			if err := setDown(link); err != nil {
				return err
			}
			if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
				return fmt.Errorf("set MAC: %w", err)
			}
		}
	}
	if iface.MTU >= 68 && iface.MTU <= 65535 && iface.MTU != link.Attrs().MTU {
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
