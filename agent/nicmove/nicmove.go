package nicmove

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Move is one NIC of the source taken over by a device of this machine.
type Move struct {
	Name      string   // the source's interface name, which the new NIC takes
	MAC       string   // the source's MAC, which the new NIC takes ("" keeps the new NIC's own)
	Addresses []string // CIDR; IPv6 link-local ones are skipped
	Routes    []string // as the probe writes them, see ParseRoute
	PCI       string   // the new NIC's PCI address on this machine
	OldPCI    string   // the source's PCI address (the stale device), informational
	// StaleOpen says that the stale link holding Name must stay up: its
	// driver cannot close it (a virtio-net whose restore failed oopses in
	// its close). Its addresses are taken and it is renamed while up,
	// which Linux allows since 6.2; where the kernel refuses (EBUSY) it
	// keeps the name and the new NIC keeps its own, with the MAC,
	// addresses and routes.
	StaleOpen bool
}

// Step is one action Apply took.
type Step struct {
	What string        `json:"what"`
	Took time.Duration `json:"took"`
}

// Result is what Apply did, up to where it stopped.
type Result struct {
	KernelName string        `json:"kernel_name,omitempty"` // the new NIC's name before the rename
	Name       string        `json:"name,omitempty"`        // the new NIC's name now: Move.Name, or its own with StaleOpen
	Stale      string        `json:"stale,omitempty"`       // the name the stale holder of Move.Name got, "" if none
	Addresses  []string      `json:"addresses,omitempty"`   // on the new NIC, added now or already there
	Routes     []string      `json:"routes,omitempty"`      // through the new NIC, added now or already there
	Steps      []Step        `json:"steps,omitempty"`
	Took       time.Duration `json:"took"`
}

// Link is what Apply needs to know of a network interface.
type Link struct {
	Name   string
	Index  int
	MAC    net.HardwareAddr
	Up     bool   // administratively up
	Driver string // informational
}

// ErrNoLink is returned, wrapped, by Sys.LinkByName for a name no link has.
var ErrNoLink = errors.New("no such link")

// ErrNoNetdev is returned, wrapped, by Apply when no netdev appeared under
// the new NIC's PCI device in time.
var ErrNoNetdev = errors.New("no netdev appeared")

// Sys is what Apply touches. Every call must be synchronous.
type Sys interface {
	// Netdevs lists the netdev names under the PCI device
	// (/sys/bus/pci/devices/PCI/net); none, without error, while the
	// device or its netdev is not there yet.
	Netdevs(pci string) ([]string, error)
	// LinkByName finds a link by name; ErrNoLink when there is none.
	LinkByName(name string) (Link, error)
	SetDown(index int) error
	SetUp(index int) error
	Rename(index int, name string) error
	SetMAC(index int, mac net.HardwareAddr) error
	Addrs(index int) ([]*net.IPNet, error)
	AddAddr(index int, a *net.IPNet) error
	DelAddr(index int, a *net.IPNet) error
	// AddRoute adds a route (dst nil: default; gw nil: through the link
	// itself) and fails with EEXIST when it is there.
	AddRoute(index int, dst *net.IPNet, gw net.IP) error
	// ReplaceRoute adds a route or replaces the one to the same
	// destination.
	ReplaceRoute(index int, dst *net.IPNet, gw net.IP) error
	Sleep(d time.Duration)
}

// pollEvery is how often Apply looks for the new NIC's netdev.
const pollEvery = 10 * time.Millisecond

// maxStale bounds the search for a free oldN name.
const maxStale = 1000

// Apply makes the new NIC at m.PCI take over m: it waits up to timeout for
// the NIC's netdev, moves a stale link that holds m.Name out of the way
// (down, addresses deleted, renamed oldN), then sets the new NIC down,
// renames it to m.Name, sets its MAC, sets it up, and adds the addresses
// and routes. Steps already in effect are skipped, so that on a NIC
// already moved Apply only ensures that it is up and re-asserts the
// routes. logf, if not nil, gets one line per step.
//
// A failing step's error names the step, m.Name and m.PCI; the Result
// says what was done up to then.
func Apply(sys Sys, m Move, timeout time.Duration, logf func(string, ...any)) (Result, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	a := &applier{sys: sys, m: m, logf: logf}
	start := time.Now()
	err := a.run(timeout)
	a.res.Took = time.Since(start)
	return a.res, err
}

type applier struct {
	sys  Sys
	m    Move
	logf func(string, ...any)
	res  Result
}

// fail wraps err with m's name, PCI address and the step.
func (a *applier) fail(step string, err error) error {
	return fmt.Errorf("nicmove: %s (PCI %s): %s: %w", a.m.Name, a.m.PCI, step, err)
}

// do runs one step, logging and recording it.
func (a *applier) do(what string, f func() error) error {
	t := time.Now()
	err := f()
	took := time.Since(t)
	if err != nil {
		return a.fail(what, err)
	}
	a.res.Steps = append(a.res.Steps, Step{What: what, Took: took})
	a.logf("nicmove: %s (PCI %s): %s (%v)", a.m.Name, a.m.PCI, what, took)
	return nil
}

func (a *applier) run(timeout time.Duration) error {
	m := a.m
	if err := validName(m.Name); err != nil {
		return a.fail("check the move", err)
	}
	if m.PCI == "" {
		return a.fail("check the move", errors.New("no PCI address for the new NIC"))
	}
	var mac net.HardwareAddr
	if m.MAC != "" {
		var err error
		if mac, err = net.ParseMAC(m.MAC); err != nil {
			return a.fail("check the move", err)
		}
	}
	var addrs []*net.IPNet
	for _, s := range m.Addresses {
		ad, err := parseAddr(s)
		if err != nil {
			return a.fail(fmt.Sprintf("parse address %q", s), err)
		}
		if linkLocal6(ad) {
			a.logf("nicmove: %s (PCI %s): skip link-local %s", m.Name, m.PCI, s)
			continue
		}
		addrs = append(addrs, ad)
	}
	var routes []route
	for _, s := range m.Routes {
		dst, gw, err := ParseRoute(s)
		if err != nil {
			return a.fail("parse route", err)
		}
		routes = append(routes, route{text: s, dst: dst, gw: gw})
	}
	// Routes through the link itself first, then those via a gateway,
	// the default last: a gateway must be reachable when its route is
	// added.
	rank := func(r route) int {
		switch {
		case r.isDefault():
			return 2
		case r.gw != nil:
			return 1
		}
		return 0
	}
	sort.SliceStable(routes, func(i, j int) bool { return rank(routes[i]) < rank(routes[j]) })

	netdev, err := a.wait(timeout)
	if err != nil {
		return err
	}
	a.res.KernelName = netdev
	var nic Link
	if err := a.do("look up "+netdev, func() (err error) {
		nic, err = a.sys.LinkByName(netdev)
		return err
	}); err != nil {
		return err
	}
	a.logf("nicmove: %s (PCI %s): the new NIC is %s (index %d, MAC %s, driver %s, up %v); the source's was at %s",
		m.Name, m.PCI, nic.Name, nic.Index, nic.MAC, nic.Driver, nic.Up, orNone(m.OldPCI))

	want := m.Name
	if nic.Name != m.Name {
		held, err := a.moveStale(nic.Index)
		if err != nil {
			return err
		}
		if held {
			want = nic.Name
		}
	}
	a.res.Name = want

	rename := nic.Name != want
	setMAC := mac != nil && !bytes.Equal(mac, nic.MAC)
	if (rename || setMAC) && nic.Up {
		if err := a.do("set "+nic.Name+" down", func() error { return a.sys.SetDown(nic.Index) }); err != nil {
			return err
		}
		nic.Up = false
	}
	if rename {
		if err := a.do("rename "+nic.Name+" to "+want, func() error { return a.sys.Rename(nic.Index, want) }); err != nil {
			return err
		}
		nic.Name = want
	}
	if setMAC {
		if err := a.do(fmt.Sprintf("set MAC of %s to %s (was %s)", nic.Name, mac, nic.MAC), func() error { return a.sys.SetMAC(nic.Index, mac) }); err != nil {
			return err
		}
	}
	if !nic.Up {
		if err := a.do("set "+nic.Name+" up", func() error { return a.sys.SetUp(nic.Index) }); err != nil {
			return err
		}
	}

	var have []*net.IPNet
	if err := a.do("list addresses of "+nic.Name, func() (err error) {
		have, err = a.sys.Addrs(nic.Index)
		return err
	}); err != nil {
		return err
	}
	for _, ad := range addrs {
		if !holds(have, ad) {
			if err := a.do(fmt.Sprintf("add %s to %s", ad, nic.Name), func() error { return a.sys.AddAddr(nic.Index, ad) }); err != nil {
				return err
			}
		}
		a.res.Addresses = append(a.res.Addresses, ad.String())
	}

	for _, r := range routes {
		if r.isDefault() {
			if err := a.do(fmt.Sprintf("replace route %q through %s", r.text, nic.Name), func() error { return a.sys.ReplaceRoute(nic.Index, r.dst, r.gw) }); err != nil {
				return err
			}
		} else {
			what := fmt.Sprintf("add route %q through %s", r.text, nic.Name)
			err := a.do(what, func() error { return a.sys.AddRoute(nic.Index, r.dst, r.gw) })
			if errors.Is(err, unix.EEXIST) {
				a.res.Steps = append(a.res.Steps, Step{What: what + ": already there"})
				a.logf("nicmove: %s (PCI %s): %s: already there", m.Name, m.PCI, what)
				err = nil
			}
			if err != nil {
				return err
			}
		}
		a.res.Routes = append(a.res.Routes, r.text)
	}
	return nil
}

// wait polls for a netdev under the new NIC's PCI device until timeout.
func (a *applier) wait(timeout time.Duration) (string, error) {
	step := "wait for a netdev under /sys/bus/pci/devices/" + a.m.PCI + "/net"
	start := time.Now()
	deadline := start.Add(timeout)
	for polls := 1; ; polls++ {
		names, err := a.sys.Netdevs(a.m.PCI)
		if err != nil {
			return "", a.fail(step, err)
		}
		if len(names) > 0 {
			sort.Strings(names)
			took := time.Since(start)
			a.res.Steps = append(a.res.Steps, Step{What: step, Took: took})
			a.logf("nicmove: %s (PCI %s): %s: %v after %d polls (%v)", a.m.Name, a.m.PCI, step, names, polls, took)
			return names[0], nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", a.fail(step, fmt.Errorf("%w after %v (%d polls)", ErrNoNetdev, timeout, polls))
		}
		a.sys.Sleep(min(left, pollEvery))
	}
}

// moveStale moves the link that holds m.Name, if it is not the new NIC,
// out of the way: down, its addresses (but IPv6 link-local) deleted,
// renamed to the first free oldN. With m.StaleOpen it only deletes the
// addresses, and held reports that the name stays taken.
func (a *applier) moveStale(newIndex int) (held bool, err error) {
	name := a.m.Name
	old, err := a.sys.LinkByName(name)
	if errors.Is(err, ErrNoLink) {
		a.logf("nicmove: %s (PCI %s): no link holds %s", name, a.m.PCI, name)
		return false, nil
	}
	if err != nil {
		return false, a.fail("look up the stale "+name, err)
	}
	if old.Index == newIndex {
		return false, nil
	}
	a.logf("nicmove: %s (PCI %s): stale %s holds the name (index %d, MAC %s, driver %s)", name, a.m.PCI, old.Name, old.Index, old.MAC, orNone(old.Driver))
	if !a.m.StaleOpen {
		if err := a.do("set the stale "+old.Name+" down", func() error { return a.sys.SetDown(old.Index) }); err != nil {
			return false, err
		}
	}
	var addrs []*net.IPNet
	if err := a.do("list addresses of the stale "+old.Name, func() (err error) {
		addrs, err = a.sys.Addrs(old.Index)
		return err
	}); err != nil {
		return false, err
	}
	for _, ad := range addrs {
		if linkLocal6(ad) {
			continue
		}
		err := a.do(fmt.Sprintf("delete %s from the stale %s", ad, old.Name), func() error { return a.sys.DelAddr(old.Index, ad) })
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return false, err
		}
	}
	var free string
	for i := 0; i < maxStale && free == ""; i++ {
		n := fmt.Sprintf("old%d", i)
		_, err := a.sys.LinkByName(n)
		switch {
		case errors.Is(err, ErrNoLink):
			free = n
		case err != nil:
			return false, a.fail("look up "+n, err)
		}
	}
	if free == "" {
		return false, a.fail("rename the stale "+old.Name, fmt.Errorf("old0 to old%d are all taken", maxStale-1))
	}
	what := "rename the stale " + old.Name + " to " + free
	if a.m.StaleOpen {
		what += " (up: Linux 6.2 and later rename a running link)"
	}
	err = a.do(what, func() error { return a.sys.Rename(old.Index, free) })
	if a.m.StaleOpen && errors.Is(err, unix.EBUSY) {
		a.logf("nicmove: %s (PCI %s): the stale %s stays up under its name: its driver cannot close it and this kernel renames no running link; the new NIC keeps its own name", name, a.m.PCI, old.Name)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	a.res.Stale = free
	return false, nil
}

// holds says whether have holds a.
func holds(have []*net.IPNet, a *net.IPNet) bool {
	for _, h := range have {
		if sameAddr(h, a) {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
