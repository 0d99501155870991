package nicmove

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsSys is the running system but for the PCI device's netdev, which is
// the link with the given index.
type netnsSys struct {
	Sys
	index int
}

func (s netnsSys) Netdevs(pci string) ([]string, error) {
	if pci != newPCI {
		return nil, nil
	}
	l, err := netlink.LinkByIndex(s.index)
	if err != nil {
		return nil, err
	}
	return []string{l.Attrs().Name}, nil
}

// TestApplyNetns moves a link's identity to another with the real System
// in a network namespace of its own: two dummy links (veth pairs where
// the dummy driver is missing) stand in for the stale and the new NIC.
func TestApplyNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root to create a network namespace and links (euid %d)", os.Geteuid())
	}
	// The thread enters a new network namespace and stays locked: it
	// ends with the test's goroutine and never runs anything else.
	runtime.LockOSThread()
	before, err0 := os.Readlink("/proc/thread-self/ns/net")
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Skipf("cannot create a network namespace (unshare CLONE_NEWNET): %v", err)
	}
	after, err1 := os.Readlink("/proc/thread-self/ns/net")
	if err0 != nil || err1 != nil || before == after {
		t.Fatalf("not in a network namespace of its own: %q (%v) before unshare, %q (%v) after", before, err0, after, err1)
	}

	mk := func(name, mac string) netlink.Link {
		t.Helper()
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		attrs := netlink.LinkAttrs{Name: name, HardwareAddr: hw}
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil {
			verr := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "p"})
			if verr != nil {
				t.Skipf("cannot create a dummy (%v) or a veth link (%v) in the network namespace", err, verr)
			}
			p, err := netlink.LinkByName(name + "p")
			if err == nil {
				err = netlink.LinkSetUp(p)
			}
			if err != nil {
				t.Fatalf("veth peer %sp: %v", name, err)
			}
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	stale := mk("enp0s2", srcMAC)
	nic := mk("eth0", newMAC)
	if err := netlink.LinkSetUp(stale); err != nil {
		t.Fatal(err)
	}
	src, _ := parseAddr("10.0.2.15/24")
	if err := netlink.AddrAdd(stale, &netlink.Addr{IPNet: src}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: stale.Attrs().Index, Gw: net.IPv4(10, 0, 2, 2)}); err != nil {
		t.Fatal(err)
	}

	s := netnsSys{Sys: System(), index: nic.Attrs().Index}
	res, err := Apply(s, move(), 5*time.Second, t.Logf)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.KernelName != "eth0" || res.Stale != "old0" {
		t.Errorf("kernel name %q, stale %q; want eth0, old0", res.KernelName, res.Stale)
	}
	check := func(when string) {
		t.Helper()
		l, err := netlink.LinkByName("enp0s2")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		at := l.Attrs()
		if at.Index != nic.Attrs().Index || at.HardwareAddr.String() != srcMAC || at.Flags&net.FlagUp == 0 {
			t.Errorf("%s: enp0s2 is index %d, MAC %s, flags %v; want index %d, %s, up", when, at.Index, at.HardwareAddr, at.Flags, nic.Attrs().Index, srcMAC)
		}
		if got := addrs(t, l); got != "10.0.2.15/24" {
			t.Errorf("%s: enp0s2 has %q, want 10.0.2.15/24", when, got)
		}
		rs, err := netlink.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			dst := "default"
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					dst = r.Dst.String()
				}
			}
			if r.Gw != nil {
				dst += " via " + r.Gw.String()
			}
			got = append(got, dst)
		}
		for _, w := range movedRoutes {
			if !strings.Contains(","+strings.Join(got, ",")+",", ","+w+",") {
				t.Errorf("%s: no route %q through enp0s2: %q", when, w, got)
			}
		}
		old, err := netlink.LinkByName("old0")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if old.Attrs().Index != stale.Attrs().Index || old.Attrs().Flags&net.FlagUp != 0 {
			t.Errorf("%s: old0 is index %d, flags %v; want %d, down", when, old.Attrs().Index, old.Attrs().Flags, stale.Attrs().Index)
		}
		if got := addrs(t, old); got != "" {
			t.Errorf("%s: old0 has %q, want none", when, got)
		}
	}
	check("after Apply")

	res, err = Apply(s, move(), 5*time.Second, t.Logf)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if res.KernelName != "enp0s2" || res.Stale != "" {
		t.Errorf("second Apply: kernel name %q, stale %q; want enp0s2 and none", res.KernelName, res.Stale)
	}
	for _, st := range res.Steps {
		for _, w := range []string{"down", "rename", "MAC", "add 10."} {
			if strings.Contains(st.What, w) {
				t.Errorf("second Apply: step %q", st.What)
			}
		}
	}
	check("after the second Apply")
}

// addrs lists a link's IPv4 addresses, comma-separated.
func addrs(t *testing.T, l netlink.Link) string {
	t.Helper()
	as, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range as {
		s = append(s, a.IPNet.String())
	}
	return strings.Join(s, ",")
}
