package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	urand "github.com/u-root/uio/rand"
)

// ack builds a server's ACK and passes it through its wire format, so
// that newLease reads what a client would receive.
func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithHwAddr(mac),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	p.OpCode = dhcpv4.OpcodeBootReply
	q, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, x := range s {
		out = append(out, net.ParseIP(x).To4())
	}
	return out
}

func TestNewLease(t *testing.T) {
	srv := net.ParseIP("192.0.2.1")
	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		want Lease
	}{
		{
			name: "full",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithYourIP(net.ParseIP("192.0.2.50")),
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(ips("192.0.2.1", "192.0.2.2")...),
				dhcpv4.WithDNS(ips("192.0.2.53", "0.0.0.0", "192.0.2.54")...),
				dhcpv4.WithOption(dhcpv4.OptDomainName("lab.example")),
				dhcpv4.WithDomainSearchList("lab.example", "example"),
				dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0x78}), // 1400
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srv)),
				dhcpv4.WithServerIP(net.ParseIP("192.0.2.9")),
				dhcpv4.WithOption(dhcpv4.OptBootFileName("agent.ipxe")),
				dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(2 * time.Hour)),
			},
			want: Lease{
				Addr:   netip.MustParsePrefix("192.0.2.50/24"),
				Router: ips("192.0.2.1")[0], DNS: ips("192.0.2.53", "192.0.2.54"),
				Domain: "lab.example", Search: []string{"lab.example", "example"}, MTU: 1400,
				Server: srv.To4(), NextServer: ips("192.0.2.9")[0], BootFile: "agent.ipxe", LeaseTime: 2 * time.Hour,
			},
		},
		{
			name: "no mask is /32",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithYourIP(net.ParseIP("10.1.2.3")),
				dhcpv4.WithRouter(ips("10.1.0.1")...),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srv)),
			},
			want: Lease{Addr: netip.MustParsePrefix("10.1.2.3/32"), Router: ips("10.1.0.1")[0], Server: srv.To4()},
		},
		{
			name: "classless routes override the router option",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithYourIP(net.ParseIP("192.0.2.50")),
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(ips("192.0.2.1")...),
				dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
					&dhcpv4.Route{Dest: &net.IPNet{IP: ips("198.51.100.0")[0], Mask: net.CIDRMask(24, 32)}, Router: net.IPv4zero},
					&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Router: ips("192.0.2.254")[0]},
				)),
			},
			want: Lease{
				Addr:   netip.MustParsePrefix("192.0.2.50/24"),
				Router: ips("192.0.2.254")[0],
				Routes: []Route{
					{Dst: netip.MustParsePrefix("198.51.100.0/24")},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: ips("192.0.2.254")[0]},
				},
			},
		},
		{
			name: "boot file from the header",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithYourIP(net.ParseIP("192.0.2.50")),
				func(d *dhcpv4.DHCPv4) { d.BootFileName = "pxelinux.0" },
			},
			want: Lease{Addr: netip.MustParsePrefix("192.0.2.50/32"), BootFile: "pxelinux.0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newLease("eth0", "52:54:00:12:34:56", ack(t, tc.mods...))
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Iface, tc.want.MAC = "eth0", "52:54:00:12:34:56"
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("newLease =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestNewLeaseBad(t *testing.T) {
	srv := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1")))
	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		want string
	}{
		{"no address", []dhcpv4.Modifier{srv}, "server 192.0.2.1 acknowledged with no usable address (yiaddr 0.0.0.0)"},
		{"broadcast address", []dhcpv4.Modifier{srv, dhcpv4.WithYourIP(net.IPv4bcast)}, "no usable address"},
		{"mask with holes", []dhcpv4.Modifier{srv, dhcpv4.WithYourIP(net.ParseIP("192.0.2.5")), dhcpv4.WithNetmask(net.IPMask{255, 0, 255, 0})}, "subnet mask ff00ff00, which is not a prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newLease("eth0", "", ack(t, tc.mods...))
			if !errors.Is(err, ErrBadLease) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("newLease error %v, want ErrBadLease with %q", err, tc.want)
			}
		})
	}
}

func TestLeaseString(t *testing.T) {
	l := &Lease{
		Iface: "eth0", MAC: "52:54:00:12:34:56", Addr: netip.MustParsePrefix("192.0.2.50/24"),
		Router: ips("192.0.2.1")[0], DNS: ips("192.0.2.53"), Server: ips("192.0.2.1")[0],
		LeaseTime: time.Hour, Took: 1234567 * time.Microsecond,
	}
	want := "eth0 (52:54:00:12:34:56): 192.0.2.50/24 via 192.0.2.1, DNS 192.0.2.53, from server 192.0.2.1 for 1h0m0s in 1.235s"
	if got := l.String(); got != want {
		t.Errorf("String =\n%s\nwant\n%s", got, want)
	}
}

func TestErrorMessage(t *testing.T) {
	err := &Error{Links: []*LinkError{
		{Link: "eth0", MAC: "52:54:00:00:00:01", Err: errors.Join(ErrNoCarrier)},
		{Link: "eth1", MAC: "52:54:00:00:00:02", Attempts: 5, Err: ErrNoAnswer},
	}}
	want := "no DHCP lease on any of the links tried: eth0 (52:54:00:00:00:01): no carrier; eth1 (52:54:00:00:00:02): no DHCP server answered"
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, ErrNoCarrier) || !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrRefused) {
		t.Errorf("errors.Is does not see the links' errors")
	}
}

func TestBackoff(t *testing.T) {
	for i, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 100 {
			if d := backoff(i + 1); d < base-base/5 || d > base+base/5 {
				t.Fatalf("backoff(%d) = %v, want %v ± 20%%", i+1, d, base)
			}
		}
	}
}

// FuzzLease: a server's answer is outside bytes. Whatever parses as a
// DHCPv4 packet, newLease returns a lease with a usable unicast address
// and prefix, or an error; it never panics.
func FuzzLease(f *testing.F) {
	p, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)), dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)))
	f.Add(p.ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := newLease("eth0", "52:54:00:12:34:56", pkt)
		if err != nil {
			return
		}
		if !l.Addr.IsValid() || !l.Addr.Addr().Is4() || l.Addr.Addr().IsUnspecified() {
			t.Fatalf("lease with address %v from %x", l.Addr, b)
		}
		_ = l.String()
	})
}

// The transaction ids come from a source that never waits for the
// kernel's random pool, even with a context that is already done.
func TestTransactionIDNeverWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	seen := map[dhcpv4.TransactionID]bool{}
	for i := 0; i < 64; i++ {
		xid, err := dhcpv4.GenerateTransactionIDWithContext(ctx)
		if err != nil {
			t.Fatalf("transaction id with a done context: %v", err)
		}
		seen[xid] = true
	}
	if len(seen) < 60 {
		t.Errorf("%d distinct transaction ids of 64", len(seen))
	}
	if _, ok := urand.Reader.(nonBlocking); !ok {
		t.Errorf("u-root's random source is %T, want nonBlocking", urand.Reader)
	}
}
