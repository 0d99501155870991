package nicmove

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ParseRoute parses a route as the probe writes it: "default via 10.0.2.2",
// "10.0.2.0/24", "192.168.1.0/24 via 10.0.2.1", or "default" for a default
// route through the link itself. dst is nil for a default route; gw is nil
// for a route without a gateway. IPv4 addresses come back in their 4-byte
// form, and dst is masked to its prefix.
func ParseRoute(s string) (dst *net.IPNet, gw net.IP, err error) {
	f := strings.Fields(s)
	if len(f) != 1 && len(f) != 3 {
		return nil, nil, fmt.Errorf("route %q: want DEST or DEST via GATEWAY", s)
	}
	if f[0] != "default" {
		_, dst, err = net.ParseCIDR(f[0])
		if err != nil {
			return nil, nil, fmt.Errorf("route %q: destination: %w", s, err)
		}
		if len(dst.IP) == net.IPv6len && dst.IP.To4() != nil {
			return nil, nil, fmt.Errorf("route %q: destination %s is an IPv4-mapped IPv6 prefix", s, f[0])
		}
	}
	if len(f) == 1 {
		return dst, nil, nil
	}
	if f[1] != "via" {
		return nil, nil, fmt.Errorf("route %q: %q where \"via\" was expected", s, f[1])
	}
	gw = net.ParseIP(f[2])
	if gw == nil {
		return nil, nil, fmt.Errorf("route %q: gateway %q is not an IP address", s, f[2])
	}
	if v4 := gw.To4(); v4 != nil {
		gw = v4
	}
	if gw.IsUnspecified() || gw.IsMulticast() {
		return nil, nil, fmt.Errorf("route %q: gateway %s is not a unicast address", s, gw)
	}
	if dst != nil && len(dst.IP) != len(gw) {
		return nil, nil, fmt.Errorf("route %q: destination and gateway are of different families", s)
	}
	return dst, gw, nil
}

// route is a parsed route of a Move.
type route struct {
	text string
	dst  *net.IPNet // nil: default
	gw   net.IP
}

// isDefault says whether r is a default route, written "default" or as a
// zero-length prefix.
func (r route) isDefault() bool {
	if r.dst == nil {
		return true
	}
	ones, _ := r.dst.Mask.Size()
	return ones == 0
}

// parseAddr parses an address in CIDR form, keeping its host part.
func parseAddr(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return &net.IPNet{IP: ip, Mask: n.Mask}, nil
}

// linkLocal6 says whether a is an IPv6 link-local address (fe80::/10),
// which the kernel makes by itself.
func linkLocal6(a *net.IPNet) bool {
	return a.IP.To4() == nil && a.IP.IsLinkLocalUnicast()
}

// sameAddr says whether a and b are the same address with the same prefix
// length.
func sameAddr(a, b *net.IPNet) bool {
	ao, ab := a.Mask.Size()
	bo, bb := b.Mask.Size()
	return a.IP.Equal(b.IP) && ao == bo && ab == bb
}

// validName checks an interface name as the kernel's dev_valid_name does.
func validName(s string) error {
	switch {
	case s == "":
		return errors.New("empty interface name")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case strings.ContainsAny(s, "/: \t\n\r\v\f"):
		return fmt.Errorf("interface name %q holds a '/', ':' or space", s)
	}
	return nil
}
