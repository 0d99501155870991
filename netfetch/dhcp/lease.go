package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is the network configuration one DHCP server gave one link.
type Lease struct {
	Iface string `json:"iface"`
	MAC   string `json:"mac"`
	// Addr is the leased address with the subnet mask's prefix length
	// (/32 when the server sent no mask).
	Addr netip.Prefix `json:"addr"`
	// Router is the default gateway: from the classless static routes
	// (option 121) when the server sent them, as RFC 3442 requires, else
	// the first router of option 3. Nil when there is none.
	Router net.IP `json:"router,omitempty"`
	// Routes are the classless static routes (option 121), if any.
	Routes []Route  `json:"routes,omitempty"`
	DNS    []net.IP `json:"dns,omitempty"`
	Domain string   `json:"domain,omitempty"`
	Search []string `json:"search,omitempty"`
	// MTU is the interface MTU (option 26), 0 when not sent.
	MTU int `json:"mtu,omitempty"`
	// Server is the DHCP server that gave the lease (option 54).
	Server net.IP `json:"server"`
	// NextServer (siaddr) and BootFile (option 67, else the header's
	// file field) are the PXE boot server and file, if any.
	NextServer net.IP `json:"next_server,omitempty"`
	BootFile   string `json:"bootfile,omitempty"`
	// LeaseTime is the lease's duration (option 51), 0 when not sent.
	// Nothing renews it.
	LeaseTime time.Duration `json:"lease_time,omitempty"`
	// Took is the time from the call to Configure until the link was
	// configured.
	Took time.Duration `json:"took"`
}

// Route is one classless static route.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	// Gw is nil for a destination on the link itself.
	Gw net.IP `json:"gw,omitempty"`
}

func (l *Lease) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", l.Iface, l.MAC, l.Addr)
	if l.Router != nil {
		fmt.Fprintf(&b, " via %s", l.Router)
	}
	if len(l.DNS) > 0 {
		dns := make([]string, len(l.DNS))
		for i, ip := range l.DNS {
			dns[i] = ip.String()
		}
		fmt.Fprintf(&b, ", DNS %s", strings.Join(dns, " "))
	}
	fmt.Fprintf(&b, ", from server %s", l.Server)
	if l.LeaseTime > 0 {
		fmt.Fprintf(&b, " for %v", l.LeaseTime)
	}
	if l.Took > 0 {
		fmt.Fprintf(&b, " in %v", l.Took.Round(time.Millisecond))
	}
	return b.String()
}

// newLease reads the lease out of a server's ACK.
func newLease(iface, mac string, ack *dhcpv4.DHCPv4) (*Lease, error) {
	server := ack.ServerIdentifier()
	from := "server"
	if server != nil {
		from = "server " + server.String()
	}
	ip, ok := v4(ack.YourIPAddr)
	if !ok || !ip.IsGlobalUnicast() {
		return nil, fmt.Errorf("%w: %s acknowledged with no usable address (yiaddr %v)", ErrBadLease, from, ack.YourIPAddr)
	}
	bits := 32
	if m := ack.SubnetMask(); m != nil {
		ones, size := m.Size()
		if size != 32 {
			return nil, fmt.Errorf("%w: %s sent subnet mask %v, which is not a prefix", ErrBadLease, from, m)
		}
		bits = ones
	}
	l := &Lease{
		Iface:    iface,
		MAC:      mac,
		Addr:     netip.PrefixFrom(ip, bits),
		Domain:   ack.DomainName(),
		Server:   server,
		BootFile: strings.TrimRight(ack.BootFileNameOption(), "\x00"),
	}
	if l.BootFile == "" {
		l.BootFile = strings.TrimRight(ack.BootFileName, "\x00")
	}
	if ns, ok := v4(ack.ServerIPAddr); ok && !ns.IsUnspecified() {
		l.NextServer = ack.ServerIPAddr.To4()
	}
	if s := ack.DomainSearch(); s != nil {
		l.Search = s.Labels
	}
	for _, d := range ack.DNS() {
		if a, ok := v4(d); ok && !a.IsUnspecified() {
			l.DNS = append(l.DNS, d.To4())
		}
	}
	if b := ack.GetOneOption(dhcpv4.OptionInterfaceMTU); len(b) == 2 {
		if mtu := int(binary.BigEndian.Uint16(b)); mtu >= 68 {
			l.MTU = mtu
		}
	}
	if ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		l.LeaseTime = ack.IPAddressLeaseTime(0)
	}
	if routes := ack.ClasslessStaticRoute(); len(routes) > 0 {
		for _, r := range routes {
			dst, ok := v4(r.Dest.IP)
			ones, size := r.Dest.Mask.Size()
			if !ok || size != 32 {
				return nil, fmt.Errorf("%w: %s sent classless static route %v", ErrBadLease, from, r.Dest)
			}
			rt := Route{Dst: netip.PrefixFrom(dst, ones).Masked()}
			if gw, ok := v4(r.Router); ok && !gw.IsUnspecified() {
				rt.Gw = r.Router.To4()
			}
			if rt.Dst.Bits() == 0 && rt.Gw != nil && l.Router == nil {
				l.Router = rt.Gw
			}
			l.Routes = append(l.Routes, rt)
		}
	} else {
		for _, r := range ack.Router() {
			if a, ok := v4(r); ok && !a.IsUnspecified() {
				l.Router = r.To4()
				break
			}
		}
	}
	return l, nil
}

// v4 converts an IPv4 net.IP to a netip.Addr.
func v4(ip net.IP) (netip.Addr, bool) {
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(ip4)), true
}
