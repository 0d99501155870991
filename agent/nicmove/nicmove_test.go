package nicmove

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	srcMAC = "52:54:00:12:34:56"
	newMAC = "00:0c:29:aa:bb:cc"
	newPCI = "0000:00:0a.0"
	oldPCI = "0000:00:02.0"
)

// move is the source's virtio-net enp0s2 taken over by the NIC at newPCI.
func move() Move {
	return Move{
		Name:      "enp0s2",
		MAC:       srcMAC,
		Addresses: []string{"10.0.2.15/24", "fe80::5054:ff:fe12:3456/64"},
		Routes:    []string{"default via 10.0.2.2", "10.0.2.0/24", "192.168.1.0/24 via 10.0.2.1"},
		PCI:       newPCI,
		OldPCI:    oldPCI,
	}
}

// staleAndNew is this machine after the rescan: the stale enp0s2, up with
// its addresses and routes, and the new NIC, eth0, down.
func staleAndNew() *fake {
	f := newFake(map[string]string{newPCI: "eth0"},
		"lo 1 00:00:00:00:00:00 up 127.0.0.1/8",
		"enp0s2 2 "+srcMAC+" up 10.0.2.15/24 fe80::5054:ff:fe12:3456/64",
		"eth0 3 "+newMAC+" down")
	f.routes = append(f.routes, fakeRoute{index: 2, dst: "default", gw: "10.0.2.2"})
	return f
}

// movedRoutes are move's routes through enp0s2, sorted, which is also the
// order Apply adds them in.
var movedRoutes = []string{"10.0.2.0/24", "192.168.1.0/24 via 10.0.2.1", "default via 10.0.2.2"}

func TestApply(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fake    func() *fake
		move    func(*Move)
		timeout time.Duration
		// want
		ops    []string // in order; nil: not checked
		state  []string // fake.state of links
		routes []string // through enp0s2
		res    Result   // but Steps and Took
		err    []string // substrings of the error
		is     error
	}{{
		name: "stale holder renamed, addresses moved",
		fake: staleAndNew,
		ops: []string{
			"down enp0s2",
			"deladdr enp0s2 10.0.2.15/24",
			"rename enp0s2 old0",
			"rename eth0 enp0s2",
			"mac enp0s2 " + srcMAC,
			"up enp0s2",
			"addaddr enp0s2 10.0.2.15/24",
			"addroute enp0s2 10.0.2.0/24",
			"addroute enp0s2 192.168.1.0/24 via 10.0.2.1",
			"replaceroute enp0s2 default via 10.0.2.2",
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24", "old0 " + srcMAC + " down", "eth0=none"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "stale virtio-net renamed while up",
		fake: func() *fake { f := staleAndNew(); f.liveRename = true; return f },
		move: func(m *Move) { m.StaleOpen = true },
		ops: []string{
			"deladdr enp0s2 10.0.2.15/24",
			"rename enp0s2 old0",
			"rename eth0 enp0s2",
			"mac enp0s2 " + srcMAC,
			"up enp0s2",
			"addaddr enp0s2 10.0.2.15/24",
			"addroute enp0s2 10.0.2.0/24",
			"addroute enp0s2 192.168.1.0/24 via 10.0.2.1",
			"replaceroute enp0s2 default via 10.0.2.2",
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24", "old0 " + srcMAC + " up fe80::5054:ff:fe12:3456/64"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "stale virtio-net on a kernel that renames no running link: the new NIC keeps its own name",
		fake: staleAndNew, // Linux 6.1: a running link is not renamed
		move: func(m *Move) { m.StaleOpen = true },
		ops: []string{
			"deladdr enp0s2 10.0.2.15/24",
			"rename enp0s2 old0", // EBUSY: it is up
			"mac eth0 " + srcMAC,
			"up eth0",
			"addaddr eth0 10.0.2.15/24",
			"addroute eth0 10.0.2.0/24",
			"addroute eth0 192.168.1.0/24 via 10.0.2.1",
			"replaceroute eth0 default via 10.0.2.2",
		},
		state:  []string{"eth0 " + srcMAC + " up 10.0.2.15/24", "enp0s2 " + srcMAC + " up fe80::5054:ff:fe12:3456/64"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "eth0", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "first free oldN",
		fake: func() *fake {
			f := staleAndNew()
			f.links = append(f.links, &fakeLink{name: "old0", index: 9, mac: net.HardwareAddr{2, 0, 0, 0, 0, 9}})
			return f
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24", "old1 " + srcMAC + " down", "old0 02:00:00:00:00:09 down"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old1", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "no stale holder, new NIC up",
		fake: func() *fake {
			return newFake(map[string]string{newPCI: "eth0"}, "eth0 3 "+newMAC+" up")
		},
		ops: []string{
			"down eth0",
			"rename eth0 enp0s2",
			"mac enp0s2 " + srcMAC,
			"up enp0s2",
			"addaddr enp0s2 10.0.2.15/24",
			"addroute enp0s2 10.0.2.0/24",
			"addroute enp0s2 192.168.1.0/24 via 10.0.2.1",
			"replaceroute enp0s2 default via 10.0.2.2",
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "new NIC already named as the source",
		fake: func() *fake {
			return newFake(map[string]string{newPCI: "enp0s2"}, "enp0s2 3 "+newMAC+" up")
		},
		ops: []string{
			"down enp0s2",
			"mac enp0s2 " + srcMAC,
			"up enp0s2",
			"addaddr enp0s2 10.0.2.15/24",
			"addroute enp0s2 10.0.2.0/24",
			"addroute enp0s2 192.168.1.0/24 via 10.0.2.1",
			"replaceroute enp0s2 default via 10.0.2.2",
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24"},
		routes: movedRoutes,
		res:    Result{KernelName: "enp0s2", Name: "enp0s2", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name:   "keep the new NIC's MAC",
		fake:   staleAndNew,
		move:   func(m *Move) { m.MAC = "" },
		state:  []string{"enp0s2 " + newMAC + " up 10.0.2.15/24", "old0 " + srcMAC + " down"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name: "IPv6 link-local skipped, global kept",
		fake: staleAndNew,
		move: func(m *Move) {
			m.Addresses = []string{"fe80::5054:ff:fe12:3456/64", "10.0.2.15/24", "2001:db8::15/64", "FE80::1/10"}
			m.Routes = nil
		},
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24 2001:db8::15/64"},
		routes: []string{"10.0.2.0/24", "2001:db8::/64"},
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24", "2001:db8::15/64"}},
	}, {
		name:   "netdev appears after a moment",
		fake:   func() *fake { f := staleAndNew(); f.appear = 3; return f },
		state:  []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24"},
		routes: movedRoutes,
		res:    Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24"}, Routes: movedRoutes},
	}, {
		name:    "netdev never appears",
		fake:    func() *fake { f := staleAndNew(); f.pci = nil; return f },
		timeout: 30 * time.Millisecond,
		ops:     []string{},
		state:   []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24 fe80::5054:ff:fe12:3456/64", "eth0 " + newMAC + " down"},
		err:     []string{"enp0s2", newPCI, "/sys/bus/pci/devices/" + newPCI + "/net", "30ms"},
		is:      ErrNoNetdev,
	}, {
		name:  "bad route",
		fake:  staleAndNew,
		move:  func(m *Move) { m.Routes = append(m.Routes, "10.0.3.0/24 dev eth1") },
		ops:   []string{},
		state: []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24 fe80::5054:ff:fe12:3456/64"},
		err:   []string{"enp0s2", newPCI, "parse route", `"10.0.3.0/24 dev eth1"`},
	}, {
		name: "bad address",
		fake: staleAndNew,
		move: func(m *Move) { m.Addresses = []string{"10.0.2.15"} },
		ops:  []string{},
		err:  []string{"enp0s2", newPCI, `parse address "10.0.2.15"`},
	}, {
		name: "bad MAC",
		fake: staleAndNew,
		move: func(m *Move) { m.MAC = "52:54:00" },
		ops:  []string{},
		err:  []string{"enp0s2", newPCI, "52:54:00"},
	}, {
		name: "name too long",
		fake: staleAndNew,
		move: func(m *Move) { m.Name = "enp0s2f0np0long0" },
		ops:  []string{},
		err:  []string{"enp0s2f0np0long0", "15 bytes"},
	}, {
		name:  "rename fails",
		fake:  func() *fake { f := staleAndNew(); f.fail["rename eth0 enp0s2"] = unix.EPERM; return f },
		state: []string{"old0 " + srcMAC + " down", "eth0 " + newMAC + " down"},
		res:   Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0"},
		err:   []string{"enp0s2", newPCI, "rename eth0 to enp0s2"},
		is:    unix.EPERM,
	}, {
		name:  "gateway unreachable",
		fake:  staleAndNew,
		move:  func(m *Move) { m.Routes = []string{"10.0.2.0/24", "default via 10.9.9.9"} },
		state: []string{"enp0s2 " + srcMAC + " up 10.0.2.15/24"},
		res:   Result{KernelName: "eth0", Name: "enp0s2", Stale: "old0", Addresses: []string{"10.0.2.15/24"}, Routes: []string{"10.0.2.0/24"}},
		err:   []string{"enp0s2", newPCI, `replace route "default via 10.9.9.9" through enp0s2`},
		is:    unix.ENETUNREACH,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fake()
			m := move()
			if tt.move != nil {
				tt.move(&m)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			res, err := Apply(f, m, timeout, t.Logf)
			if len(tt.err) == 0 && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if len(tt.err) > 0 {
				if err == nil {
					t.Fatalf("Apply succeeded, want an error with %q", tt.err)
				}
				for _, s := range tt.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if tt.ops != nil && !reflect.DeepEqual(f.ops, tt.ops) && !(len(f.ops) == 0 && len(tt.ops) == 0) {
				t.Errorf("operations:\n got %q\nwant %q", f.ops, tt.ops)
			}
			for _, s := range tt.state {
				name, want := strings.Fields(s)[0], s
				if n, st, ok := strings.Cut(s, "="); ok {
					name, want = n, st
				}
				if got := f.state(name); got != want {
					t.Errorf("link %s: got %q, want %q", name, got, want)
				}
			}
			if tt.routes != nil {
				name := "enp0s2"
				if tt.res.Name != "" {
					name = tt.res.Name
				}
				if got := f.routesOf(name); !reflect.DeepEqual(got, tt.routes) {
					t.Errorf("routes through %s: got %q, want %q", name, got, tt.routes)
				}
			}
			res.Steps, res.Took = nil, 0
			if !reflect.DeepEqual(res, tt.res) {
				t.Errorf("result:\n got %+v\nwant %+v", res, tt.res)
			}
		})
	}
}

// TestApplyTwice checks that a second Apply on a NIC already moved only
// ensures that it is up: no down, rename, MAC or address change, the
// routes re-asserted as they are.
func TestApplyTwice(t *testing.T) {
	for _, up := range []bool{true, false} {
		f := staleAndNew()
		if _, err := Apply(f, move(), time.Second, t.Logf); err != nil {
			t.Fatalf("first Apply: %v", err)
		}
		f.pci[newPCI] = "enp0s2"
		want := []string{"addroute enp0s2 10.0.2.0/24", "addroute enp0s2 192.168.1.0/24 via 10.0.2.1", "replaceroute enp0s2 default via 10.0.2.2"}
		if !up {
			// Down, the link lost its routes; up, it gets them back.
			f.byName("enp0s2").up = false
			f.routes = nil
			want = append([]string{"up enp0s2"}, want...)
		}
		before := f.state("enp0s2")
		f.ops = nil
		res, err := Apply(f, move(), time.Second, t.Logf)
		if err != nil {
			t.Fatalf("second Apply (up %v): %v", up, err)
		}
		if !reflect.DeepEqual(f.ops, want) {
			t.Errorf("second Apply (up %v): operations\n got %q\nwant %q", up, f.ops, want)
		}
		if got, want := f.state("enp0s2"), strings.Replace(before, "down", "up", 1); got != want {
			t.Errorf("second Apply (up %v): enp0s2 is %q, want %q", up, got, want)
		}
		if got := f.routesOf("enp0s2"); !reflect.DeepEqual(got, movedRoutes) {
			t.Errorf("second Apply (up %v): routes %q, want %q", up, got, movedRoutes)
		}
		if res.KernelName != "enp0s2" || res.Stale != "" {
			t.Errorf("second Apply (up %v): kernel name %q, stale %q; want enp0s2 and none", up, res.KernelName, res.Stale)
		}
		if f.state("old0") != "old0 "+srcMAC+" down" || f.state("old1") != "none" {
			t.Errorf("second Apply (up %v): the stale link is %q, old1 %q", up, f.state("old0"), f.state("old1"))
		}
	}
}

// TestApplyWaits checks the polling for the netdev and the tolerated
// EEXIST of the connected route, in the Result's steps.
func TestApplyWaits(t *testing.T) {
	f := staleAndNew()
	f.appear = 4
	res, err := Apply(f, move(), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.polls != 5 || f.slept != 4*pollEvery {
		t.Errorf("polled %d times, slept %v; want 5 and %v", f.polls, f.slept, 4*pollEvery)
	}
	if w := res.Steps[0].What; w != "wait for a netdev under /sys/bus/pci/devices/"+newPCI+"/net" {
		t.Errorf("first step %q", w)
	}
	var there bool
	for _, s := range res.Steps {
		there = there || s.What == `add route "10.0.2.0/24" through enp0s2: already there`
	}
	if !there {
		t.Errorf("no step says the connected route was already there: %+v", res.Steps)
	}
	if res.Took < 4*pollEvery {
		t.Errorf("took %v, less than the %v slept", res.Took, 4*pollEvery)
	}
}

// TestApplyTimeout checks that the wait ends at the timeout, not much
// later.
func TestApplyTimeout(t *testing.T) {
	f := staleAndNew()
	f.pci = nil
	start := time.Now()
	res, err := Apply(f, move(), 50*time.Millisecond, nil)
	took := time.Since(start)
	if !errors.Is(err, ErrNoNetdev) || !strings.Contains(err.Error(), newPCI) {
		t.Fatalf("got %v, want ErrNoNetdev naming %s", err, newPCI)
	}
	if took < 50*time.Millisecond || took > time.Second {
		t.Errorf("gave up after %v, want 50ms", took)
	}
	if res.KernelName != "" || len(res.Steps) != 0 || len(f.ops) != 0 {
		t.Errorf("did something: %+v, %q", res, f.ops)
	}
}

func TestParseRoute(t *testing.T) {
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tt := range []struct {
		in  string
		dst *net.IPNet
		gw  net.IP
		err bool
	}{
		{in: "default via 10.0.2.2", gw: net.IPv4(10, 0, 2, 2).To4()},
		{in: "10.0.2.0/24", dst: cidr("10.0.2.0/24")},
		{in: "192.168.1.0/24 via 10.0.2.1", dst: cidr("192.168.1.0/24"), gw: net.IPv4(10, 0, 2, 1).To4()},
		{in: "203.0.113.5/32 via 192.168.7.1", dst: cidr("203.0.113.5/32"), gw: net.IPv4(192, 168, 7, 1).To4()},
		{in: "  10.0.2.0/24\t", dst: cidr("10.0.2.0/24")},
		{in: "10.0.2.7/24", dst: cidr("10.0.2.0/24")},
		{in: "default"},
		{in: "0.0.0.0/0 via 10.0.2.2", dst: cidr("0.0.0.0/0"), gw: net.IPv4(10, 0, 2, 2).To4()},
		{in: "2001:db8::/32 via fe80::1", dst: cidr("2001:db8::/32"), gw: net.ParseIP("fe80::1")},
		{in: "default via fe80::1", gw: net.ParseIP("fe80::1")},
		{in: "", err: true},
		{in: "via 10.0.2.2", err: true},
		{in: "default via", err: true},
		{in: "default via nowhere", err: true},
		{in: "default gw 10.0.2.2", err: true},
		{in: "10.0.2.0/24 dev eth0", err: true},
		{in: "10.0.2.0/24 via 10.0.2.1 metric 100", err: true},
		{in: "10.0.2.0", err: true},
		{in: "10.0.2.0/33", err: true},
		{in: "default via 0.0.0.0", err: true},
		{in: "default via 224.0.0.1", err: true},
		{in: "10.0.2.0/24 via 2001:db8::1", err: true},
		{in: "2001:db8::/32 via 10.0.2.1", err: true},
		{in: "10.0.2.0/24 via 10.0.2.1/24", err: true},
		{in: "::ffff:10.0.2.0/120", err: true},
	} {
		dst, gw, err := ParseRoute(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseRoute(%q) = %v, %v; want an error", tt.in, dst, gw)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(dst, tt.dst) || !reflect.DeepEqual(gw, tt.gw) {
			t.Errorf("ParseRoute(%q) = %v, %#v; want %v, %#v", tt.in, dst, gw, tt.dst, tt.gw)
		}
	}
}

// FuzzParseRoute checks that ParseRoute does not panic and that what it
// accepts is well formed and reads back the same when written again.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"default via 10.0.2.2", "10.0.2.0/24", "192.168.1.0/24 via 10.0.2.1",
		"default", "2001:db8::/32 via fe80::1", "10.0.2.0/24 dev eth0", "::ffff:10.0.2.2/120 via ::ffff:10.0.2.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dst, gw, err := ParseRoute(s)
		if err != nil {
			return
		}
		text := "default"
		if dst != nil {
			if len(dst.IP) != len(dst.Mask) || !dst.IP.Equal(dst.IP.Mask(dst.Mask)) {
				t.Fatalf("ParseRoute(%q): destination %#v is not a masked prefix", s, dst)
			}
			text = dst.String()
		}
		if gw != nil {
			if len(gw) != net.IPv4len && len(gw) != net.IPv6len {
				t.Fatalf("ParseRoute(%q): gateway %#v", s, gw)
			}
			if dst != nil && len(dst.IP) != len(gw) {
				t.Fatalf("ParseRoute(%q): families of %v and %v differ", s, dst, gw)
			}
			text += " via " + gw.String()
		}
		dst2, gw2, err := ParseRoute(text)
		if err != nil {
			t.Fatalf("ParseRoute(%q) = %v, %v written %q: %v", s, dst, gw, text, err)
		}
		if !reflect.DeepEqual(dst, dst2) || !gw.Equal(gw2) {
			t.Fatalf("ParseRoute(%q) = %v, %v but %q reads %v, %v", s, dst, gw, text, dst2, gw2)
		}
	})
}
