package nicmove

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fake is a Sys over links, addresses and routes in memory that behaves
// as the kernel does where Apply depends on it: a link must be down to be
// renamed or to get a MAC, names are unique, adding an address to an up
// link adds its connected route, a link going down loses its routes and
// IPv6 addresses, a gateway must be on a connected route, a route to a
// destination already routed is EEXIST.
type fake struct {
	links  []*fakeLink
	pci    map[string]string // PCI address → netdev name
	appear int               // Netdevs polls that find nothing first
	polls  int
	routes []fakeRoute
	fail   map[string]error // op → its error
	ops    []string
	// liveRename: the kernel renames a running link (Linux 6.2 and
	// later); without it a rename of an up link is EBUSY, as on 6.1.
	liveRename bool
	slept      time.Duration
}

type fakeLink struct {
	name  string
	index int
	mac   net.HardwareAddr
	up    bool
	addrs []*net.IPNet
}

type fakeRoute struct {
	index int
	dst   string // CIDR, "default" for 0.0.0.0/0
	gw    string
}

func (r fakeRoute) String() string {
	s := r.dst
	if r.gw != "" {
		s += " via " + r.gw
	}
	return s
}

// newFake makes links from "name index MAC up addr…" lines.
func newFake(pci map[string]string, links ...string) *fake {
	f := &fake{pci: pci, fail: map[string]error{}}
	for _, l := range links {
		w := strings.Fields(l)
		var idx int
		fmt.Sscan(w[1], &idx)
		mac, err := net.ParseMAC(w[2])
		if err != nil {
			panic(err)
		}
		fl := &fakeLink{name: w[0], index: idx, mac: mac, up: w[3] == "up"}
		for _, a := range w[4:] {
			ad, err := parseAddr(a)
			if err != nil {
				panic(err)
			}
			fl.addrs = append(fl.addrs, ad)
			if fl.up {
				f.connect(fl, ad)
			}
		}
		f.links = append(f.links, fl)
	}
	return f
}

func (f *fake) byIndex(i int) *fakeLink {
	for _, l := range f.links {
		if l.index == i {
			return l
		}
	}
	return nil
}

func (f *fake) byName(n string) *fakeLink {
	for _, l := range f.links {
		if l.name == n {
			return l
		}
	}
	return nil
}

// op logs an operation and returns the error it is set to fail with.
func (f *fake) op(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	f.ops = append(f.ops, s)
	return f.fail[s]
}

func (f *fake) link(op string, i int) (*fakeLink, error) {
	l := f.byIndex(i)
	if l == nil {
		return nil, fmt.Errorf("%s: index %d: %w", op, i, unix.ENODEV)
	}
	return l, nil
}

func (f *fake) connect(l *fakeLink, a *net.IPNet) {
	ones, bits := a.Mask.Size()
	if ones == bits {
		return
	}
	n := &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}
	for _, r := range f.routes {
		if r.dst == n.String() && r.gw == "" {
			return
		}
	}
	f.routes = append(f.routes, fakeRoute{index: l.index, dst: n.String()})
}

func (f *fake) Netdevs(pci string) ([]string, error) {
	f.polls++
	if f.polls <= f.appear || f.pci[pci] == "" {
		return nil, nil
	}
	return []string{f.pci[pci]}, nil
}

func (f *fake) LinkByName(name string) (Link, error) {
	l := f.byName(name)
	if l == nil {
		return Link{}, fmt.Errorf("%s: %w", name, ErrNoLink)
	}
	return Link{Name: l.name, Index: l.index, MAC: append(net.HardwareAddr(nil), l.mac...), Up: l.up, Driver: "fake"}, nil
}

func (f *fake) SetDown(i int) error {
	l, err := f.link("down", i)
	if err != nil {
		return err
	}
	if err := f.op("down %s", l.name); err != nil {
		return err
	}
	l.up = false
	var rs []fakeRoute
	for _, r := range f.routes {
		if r.index != i {
			rs = append(rs, r)
		}
	}
	f.routes = rs
	var as []*net.IPNet
	for _, a := range l.addrs {
		if a.IP.To4() != nil {
			as = append(as, a)
		}
	}
	l.addrs = as
	return nil
}

func (f *fake) SetUp(i int) error {
	l, err := f.link("up", i)
	if err != nil {
		return err
	}
	if err := f.op("up %s", l.name); err != nil {
		return err
	}
	l.up = true
	for _, a := range l.addrs {
		f.connect(l, a)
	}
	return nil
}

func (f *fake) Rename(i int, name string) error {
	l, err := f.link("rename", i)
	if err != nil {
		return err
	}
	if err := f.op("rename %s %s", l.name, name); err != nil {
		return err
	}
	if l.up && !f.liveRename {
		return unix.EBUSY
	}
	if f.byName(name) != nil {
		return unix.EEXIST
	}
	l.name = name
	return nil
}

func (f *fake) SetMAC(i int, mac net.HardwareAddr) error {
	l, err := f.link("mac", i)
	if err != nil {
		return err
	}
	if err := f.op("mac %s %s", l.name, mac); err != nil {
		return err
	}
	if l.up {
		return unix.EBUSY
	}
	l.mac = append(net.HardwareAddr(nil), mac...)
	return nil
}

func (f *fake) Addrs(i int) ([]*net.IPNet, error) {
	l, err := f.link("addrs", i)
	if err != nil {
		return nil, err
	}
	return append([]*net.IPNet(nil), l.addrs...), nil
}

func (f *fake) AddAddr(i int, a *net.IPNet) error {
	l, err := f.link("addaddr", i)
	if err != nil {
		return err
	}
	if err := f.op("addaddr %s %s", l.name, a); err != nil {
		return err
	}
	if holds(l.addrs, a) {
		return unix.EEXIST
	}
	l.addrs = append(l.addrs, a)
	if l.up {
		f.connect(l, a)
	}
	return nil
}

func (f *fake) DelAddr(i int, a *net.IPNet) error {
	l, err := f.link("deladdr", i)
	if err != nil {
		return err
	}
	if err := f.op("deladdr %s %s", l.name, a); err != nil {
		return err
	}
	for j, h := range l.addrs {
		if sameAddr(h, a) {
			l.addrs = append(l.addrs[:j:j], l.addrs[j+1:]...)
			// As the kernel does: the address's prefix route goes, and
			// the routes through a gateway in it on this link.
			n := &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}
			var rs []fakeRoute
			for _, r := range f.routes {
				if r.index == i && (r.dst == n.String() || r.gw != "" && n.Contains(net.ParseIP(r.gw))) {
					continue
				}
				rs = append(rs, r)
			}
			f.routes = rs
			return nil
		}
	}
	return unix.EADDRNOTAVAIL
}

func (f *fake) route(op string, i int, dst *net.IPNet, gw net.IP) (fakeRoute, error) {
	l, err := f.link(op, i)
	if err != nil {
		return fakeRoute{}, err
	}
	r := fakeRoute{index: i, dst: "default"}
	if dst != nil {
		if ones, _ := dst.Mask.Size(); ones != 0 {
			r.dst = dst.String()
		}
	}
	if gw != nil {
		r.gw = gw.String()
	}
	if err := f.op("%s %s %s", op, l.name, r); err != nil {
		return r, err
	}
	if !l.up {
		return r, unix.ENETDOWN
	}
	if gw != nil {
		reach := false
		for _, c := range f.routes {
			_, n, err := net.ParseCIDR(c.dst)
			if c.index == i && c.gw == "" && err == nil && n.Contains(gw) {
				reach = true
			}
		}
		if !reach {
			return r, unix.ENETUNREACH
		}
	}
	return r, nil
}

func (f *fake) AddRoute(i int, dst *net.IPNet, gw net.IP) error {
	r, err := f.route("addroute", i, dst, gw)
	if err != nil {
		return err
	}
	for _, c := range f.routes {
		if c.dst == r.dst {
			return unix.EEXIST
		}
	}
	f.routes = append(f.routes, r)
	return nil
}

func (f *fake) ReplaceRoute(i int, dst *net.IPNet, gw net.IP) error {
	r, err := f.route("replaceroute", i, dst, gw)
	if err != nil {
		return err
	}
	for j, c := range f.routes {
		if c.dst == r.dst {
			f.routes[j] = r
			return nil
		}
	}
	f.routes = append(f.routes, r)
	return nil
}

func (f *fake) Sleep(d time.Duration) {
	f.slept += d
	nanosleep(d)
}

// state describes a link: "name MAC up|down addr…", addresses sorted.
func (f *fake) state(name string) string {
	l := f.byName(name)
	if l == nil {
		return "none"
	}
	st := "down"
	if l.up {
		st = "up"
	}
	s := []string{l.name, l.mac.String(), st}
	var as []string
	for _, a := range l.addrs {
		as = append(as, a.String())
	}
	sort.Strings(as)
	return strings.Join(append(s, as...), " ")
}

// routesOf lists the routes through the link, sorted.
func (f *fake) routesOf(name string) []string {
	l := f.byName(name)
	if l == nil {
		return nil
	}
	var rs []string
	for _, r := range f.routes {
		if r.index == l.index {
			rs = append(rs, r.String())
		}
	}
	sort.Strings(rs)
	return rs
}
