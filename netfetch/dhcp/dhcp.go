package dhcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout    = 4 * time.Second
	DefaultRetries    = 4
	DefaultLinkWait   = 15 * time.Second
	DefaultResolvConf = "/etc/resolv.conf"
)

// ClassID is the vendor class identifier (option 60) the agent sends, for
// DHCP servers that answer it differently (dnsmasq: dhcp-vendorclass).
const ClassID = "thaw"

// Backoff between the attempts on one link: the first wait is
// backoffBase, each next one twice the last, up to backoffMax, each with
// up to a fifth of random jitter either way. Variables for the tests.
var (
	backoffBase = time.Second
	backoffMax  = 8 * time.Second
	pollCarrier = 100 * time.Millisecond
)

// Config says where and how long to ask.
type Config struct {
	// Iface names the one link to use. "" means every Ethernet link
	// except loopback, ifb and dummy links, and links enslaved to a
	// bridge or bond.
	Iface string
	// Timeout bounds one attempt: one DISCOVER-OFFER-REQUEST-ACK
	// exchange. 0 means DefaultTimeout.
	Timeout time.Duration
	// Retries is the number of attempts after the first on each link,
	// with backoff between them. 0 means DefaultRetries; a negative
	// value means a single attempt.
	Retries int
	// LinkWait is how long a link may take to get carrier after it is
	// brought up. 0 means DefaultLinkWait.
	LinkWait time.Duration
	// ResolvConf is the file that gets the lease's DNS servers. "" means
	// DefaultResolvConf; "-" means write none.
	ResolvConf string
	// Logf, if set, gets a line per link brought up, attempt failed and
	// lease configured.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.LinkWait <= 0 {
		c.LinkWait = DefaultLinkWait
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Configure gets one DHCPv4 lease and configures the system with it.
//
// It brings up the links (Config.Iface, or every Ethernet link), and on
// each that gets carrier within Config.LinkWait runs DHCP with nclient4,
// all links at once. The first link to get a lease wins: the others are
// stopped, and the winner gets the address, the routes (option 121, or
// a default route through option 3's router), the MTU (option 26) and,
// when the lease names DNS servers, Config.ResolvConf.
//
// When no link gets a lease, the error is an [*Error] naming every link
// tried and why it failed (no carrier, no answer after so many attempts,
// a NAK). Cancelling ctx stops everything; the error then also matches
// ctx.Err().
func Configure(ctx context.Context, c Config) (*Lease, error) {
	start := time.Now()
	c = c.withDefaults()
	links, err := candidates(c.Iface)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Attrs().Name
	}
	c.Logf("dhcp: trying %s", strings.Join(names, ", "))

	type result struct {
		link  netlink.Link
		lease *Lease
		err   *LinkError
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(links))
	for _, l := range links {
		go func() {
			lease, err := tryLink(lctx, c, l)
			results <- result{l, lease, err}
		}()
	}
	var (
		win  *result
		errs []*LinkError
	)
	for range links {
		r := <-results
		switch {
		case r.lease != nil && win == nil:
			win = &r
			cancel()
		case r.err != nil && win == nil:
			errs = append(errs, r.err)
		}
	}
	if win == nil {
		// Report the links in the order they were tried.
		slices.SortFunc(errs, func(a, b *LinkError) int {
			return slices.Index(names, a.Link) - slices.Index(names, b.Link)
		})
		return nil, &Error{Links: errs, Err: ctx.Err()}
	}
	if err := apply(win.link, win.lease, c); err != nil {
		return nil, fmt.Errorf("%s: configure the lease from server %s: %w", win.lease.Iface, win.lease.Server, err)
	}
	win.lease.Took = time.Since(start)
	c.Logf("dhcp: configured %v", win.lease)
	return win.lease, nil
}

// candidates lists the links to try.
func candidates(iface string) ([]netlink.Link, error) {
	all, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the network links: %w", err)
	}
	var names []string
	for _, l := range all {
		names = append(names, l.Attrs().Name)
	}
	have := strings.Join(names, ", ")
	if have == "" {
		have = "none"
	}
	if iface != "" {
		for _, l := range all {
			a := l.Attrs()
			if a.Name != iface {
				continue
			}
			if a.Flags&net.FlagLoopback != 0 || len(a.HardwareAddr) == 0 {
				return nil, fmt.Errorf("%w: %s has no hardware address to run DHCP with", ErrNoLink, iface)
			}
			return []netlink.Link{l}, nil
		}
		return nil, fmt.Errorf("%w: no link named %s (links: %s)", ErrNoLink, iface, have)
	}
	var out []netlink.Link
	for _, l := range all {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.EncapType != "ether" || len(a.HardwareAddr) != 6 || a.MasterIndex != 0 {
			continue
		}
		if t := l.Type(); t == "ifb" || t == "dummy" {
			continue // Ethernet-like, but they lead nowhere
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no Ethernet link (links: %s); is the NIC's driver loaded?", ErrNoLink, have)
	}
	return out, nil
}

// tryLink brings one link up, waits for carrier and runs DHCP attempts
// until one gives a lease.
func tryLink(ctx context.Context, c Config, l netlink.Link) (*Lease, *LinkError) {
	name := l.Attrs().Name
	lerr := &LinkError{Link: name, MAC: l.Attrs().HardwareAddr.String()}
	fail := func(err error) (*Lease, *LinkError) {
		lerr.Err = err
		return nil, lerr
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fail(fmt.Errorf("bring the link up: %w", err))
		}
	}
	if err := waitCarrier(ctx, l, c.LinkWait); err != nil {
		if ctx.Err() == nil {
			c.Logf("dhcp: %s: %v", name, err)
		}
		return fail(err)
	}
	client, err := nclient4.New(name, nclient4.WithTimeout(c.Timeout), nclient4.WithRetry(1))
	if err != nil {
		return fail(fmt.Errorf("open a DHCP socket: %w", err))
	}
	defer client.Close()

	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(ClassID)),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionClasslessStaticRoute,
			dhcpv4.OptionInterfaceMTU, dhcpv4.OptionIPAddressLeaseTime,
			dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName),
	}
	tries := c.Retries + 1
	var last error
	for i := range tries {
		if i > 0 {
			if err := sleep(ctx, backoff(i)); err != nil {
				return fail(err)
			}
		}
		lerr.Attempts++
		lease, err := attempt(ctx, c, client, mods, name, lerr.MAC)
		if err == nil {
			c.Logf("dhcp: %s: lease %s from server %s (attempt %d)", name, lease.Addr, lease.Server, i+1)
			return lease, nil
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		c.Logf("dhcp: %s: attempt %d of %d: %v", name, i+1, tries, err)
		if errors.Is(err, ErrBadLease) {
			return fail(err)
		}
		last = err
	}
	if errors.Is(last, ErrNoAnswer) {
		// Say how hard it tried; the last error says what was missing.
		return fail(fmt.Errorf("%w after %d attempts of %v", last, tries, c.Timeout))
	}
	return fail(last)
}

// attempt is one DISCOVER-OFFER-REQUEST-ACK exchange, bounded by
// c.Timeout.
func attempt(ctx context.Context, c Config, client *nclient4.Client, mods []dhcpv4.Modifier, name, mac string) (*Lease, error) {
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	offer, err := client.DiscoverOffer(actx, mods...)
	if err != nil {
		if timedOut(err) {
			return nil, fmt.Errorf("%w: no offer to DISCOVER", ErrNoAnswer)
		}
		return nil, fmt.Errorf("DISCOVER: %w", err)
	}
	c.Logf("dhcp: %s: offer of %s from server %s", name, offer.YourIPAddr, offer.ServerIdentifier())
	lease, err := client.RequestFromOffer(actx, offer, mods...)
	if err != nil {
		var nak *nclient4.ErrNak
		switch {
		case errors.As(err, &nak):
			msg := ""
			if m := nak.Nak.Message(); m != "" {
				msg = ": " + m
			}
			return nil, fmt.Errorf("%w: server %s sent NAK for %s%s", ErrRefused, offer.ServerIdentifier(), offer.YourIPAddr, msg)
		case timedOut(err):
			return nil, fmt.Errorf("%w: server %s offered %s but sent no ACK to REQUEST", ErrNoAnswer, offer.ServerIdentifier(), offer.YourIPAddr)
		}
		return nil, fmt.Errorf("REQUEST to server %s: %w", offer.ServerIdentifier(), err)
	}
	return newLease(name, mac, lease.ACK)
}

func timedOut(err error) bool {
	return errors.Is(err, nclient4.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded)
}

func backoff(attempt int) time.Duration {
	d := backoffBase
	for i := 1; i < attempt && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// hasCarrier: the kernel says the link is up and has carrier
// (IFF_LOWER_UP); drivers that do not report an operational state show
// "unknown" and count when their carrier flag is set.
func hasCarrier(a *netlink.LinkAttrs) bool {
	return a.RawFlags&unix.IFF_LOWER_UP != 0 &&
		(a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}

func waitCarrier(ctx context.Context, l netlink.Link, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		cur, err := netlink.LinkByIndex(l.Attrs().Index)
		if err != nil {
			return fmt.Errorf("read the link's state: %w", err)
		}
		if hasCarrier(cur.Attrs()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v (link state %s)", ErrNoCarrier, wait, cur.Attrs().OperState)
		}
		if err := sleep(ctx, pollCarrier); err != nil {
			return err
		}
	}
}

// apply configures the link with the lease.
func apply(l netlink.Link, lease *Lease, c Config) error {
	prefix := lease.Addr
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   prefix.Addr().AsSlice(),
		Mask: net.CIDRMask(prefix.Bits(), 32),
	}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("add address %s: %w", prefix, err)
	}
	if lease.MTU >= 576 && lease.MTU != l.Attrs().MTU {
		if err := netlink.LinkSetMTU(l, lease.MTU); err != nil {
			c.Logf("dhcp: %s: set MTU %d as the lease says: %v (keeping %d)", lease.Iface, lease.MTU, err, l.Attrs().MTU)
		}
	}
	route := func(dst *net.IPNet, gw net.IP) error {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: gw}
		switch {
		case gw == nil:
			r.Scope = netlink.SCOPE_LINK
		case !prefix.Contains(mustV4(gw)):
			// A gateway outside the leased subnet (a /32 lease, say)
			// is still on this link.
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := netlink.RouteReplace(r); err != nil {
			to := "default"
			if dst != nil {
				to = dst.String()
			}
			if gw != nil {
				to += " via " + gw.String()
			}
			return fmt.Errorf("add route %s: %w", to, err)
		}
		return nil
	}
	if len(lease.Routes) > 0 {
		for _, rt := range lease.Routes {
			var dst *net.IPNet
			if rt.Dst.Bits() > 0 {
				dst = &net.IPNet{IP: rt.Dst.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dst.Bits(), 32)}
			}
			if err := route(dst, rt.Gw); err != nil {
				return err
			}
		}
	} else if lease.Router != nil {
		if err := route(nil, lease.Router); err != nil {
			return err
		}
	}
	if c.ResolvConf != "-" && len(lease.DNS) > 0 {
		if err := writeResolvConf(c.ResolvConf, lease); err != nil {
			return err
		}
	}
	return nil
}

func mustV4(ip net.IP) netip.Addr {
	a, _ := v4(ip)
	return a
}

func writeResolvConf(path string, lease *Lease) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by thaw from the DHCP lease of %s from %s\n", lease.Iface, lease.Server)
	if lease.Domain != "" {
		fmt.Fprintf(&b, "domain %s\n", lease.Domain)
	}
	if len(lease.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(lease.Search, " "))
	}
	for _, ip := range lease.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", ip)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write the DNS servers: %w", err)
	}
	return nil
}
