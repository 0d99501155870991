package nicmove

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// System is the running system: netlink for links, addresses and routes,
// /sys for the PCI devices' netdevs, nanosleep(2) for waiting.
func System() Sys { return sys{root: "/sys"} }

type sys struct{ root string }

func (s sys) Netdevs(pci string) ([]string, error) {
	if pci == "" || strings.ContainsRune(pci, '/') || pci == "." || pci == ".." {
		return nil, fmt.Errorf("bad PCI address %q", pci)
	}
	es, err := os.ReadDir(filepath.Join(s.root, "bus/pci/devices", pci, "net"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

func (s sys) LinkByName(name string) (Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return Link{}, fmt.Errorf("%s: %w", name, ErrNoLink)
	}
	if err != nil {
		return Link{}, err
	}
	at := l.Attrs()
	return Link{
		Name:   at.Name,
		Index:  at.Index,
		MAC:    at.HardwareAddr,
		Up:     at.Flags&net.FlagUp != 0,
		Driver: s.driver(at.Name, at.Index, l.Type()),
	}, nil
}

// driver names the driver of the link's device, from /sys when /sys shows
// this very link, else the link's type.
func (s sys) driver(name string, index int, typ string) string {
	dir := filepath.Join(s.root, "class/net", name)
	b, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil {
		return typ
	}
	if i, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || i != index {
		return typ
	}
	d, err := os.Readlink(filepath.Join(dir, "device/driver"))
	if err != nil {
		return typ
	}
	return filepath.Base(d)
}

// link is a handle on a link by index, all netlink needs.
func link(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

func (sys) SetDown(index int) error { return netlink.LinkSetDown(link(index)) }
func (sys) SetUp(index int) error   { return netlink.LinkSetUp(link(index)) }

func (sys) Rename(index int, name string) error {
	return netlink.LinkSetName(link(index), name)
}

func (sys) SetMAC(index int, mac net.HardwareAddr) error {
	return netlink.LinkSetHardwareAddr(link(index), mac)
}

func (sys) Addrs(index int) ([]*net.IPNet, error) {
	as, err := netlink.AddrList(link(index), netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := make([]*net.IPNet, 0, len(as))
	for _, a := range as {
		if a.IPNet != nil {
			out = append(out, a.IPNet)
		}
	}
	return out, nil
}

func (sys) AddAddr(index int, a *net.IPNet) error {
	return netlink.AddrAdd(link(index), &netlink.Addr{IPNet: a})
}

func (sys) DelAddr(index int, a *net.IPNet) error {
	return netlink.AddrDel(link(index), &netlink.Addr{IPNet: a})
}

func (sys) AddRoute(index int, dst *net.IPNet, gw net.IP) error {
	return netlink.RouteAdd(nlRoute(index, dst, gw))
}

func (sys) ReplaceRoute(index int, dst *net.IPNet, gw net.IP) error {
	return netlink.RouteReplace(nlRoute(index, dst, gw))
}

// nlRoute makes the netlink route; a default route gets the zero-length
// destination of its gateway's family, a route without a gateway the link
// scope, as ip-route(8) does.
func nlRoute(index int, dst *net.IPNet, gw net.IP) *netlink.Route {
	r := &netlink.Route{LinkIndex: index, Dst: dst, Gw: gw}
	if dst == nil {
		r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		if gw != nil && gw.To4() == nil {
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
	}
	if gw == nil {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

func (sys) Sleep(d time.Duration) { nanosleep(d) }

// nanosleep sleeps d on this thread, resuming after signals.
func nanosleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	for {
		var rem unix.Timespec
		err := unix.Nanosleep(&ts, &rem)
		if err != unix.EINTR {
			return
		}
		ts = rem
	}
}
