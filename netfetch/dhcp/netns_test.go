package dhcp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsEnv marks the test binary's child that runs in a new network
// namespace.
const netnsEnv = "THAW_DHCP_TEST_IN_NETNS"

// TestNetns runs Configure against insomniacslk/dhcp's server4 over veth
// pairs. The host's networking is never touched: the test binary runs
// itself again in a new network namespace (clone with CLONE_NEWNET, so
// that every thread of the child is in it), where it creates the veth
// pairs; the far end of each pair, and the DHCP server on it, live in a
// second namespace of their own, so that Configure sees only the client
// ends.
func TestNetns(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		runInNewNetns(t)
		return
	}
	if err := checkNewNetns(); err != nil {
		t.Fatal(err)
	}
	probe := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}, PeerName: "probe1"}
	if err := netlink.LinkAdd(probe); err != nil {
		t.Skipf("cannot create a veth pair (is the veth module available? modprobe veth): %v", err)
	}
	netlink.LinkDel(probe)
	oldBase := backoffBase
	backoffBase = 50 * time.Millisecond
	defer func() { backoffBase = oldBase }()

	t.Run("lease", testLease)
	t.Run("slash 32 with onlink gateway", testOnlink)
	t.Run("first link to answer wins", testFirstWins)
	t.Run("every link fails", testAllFail)
	t.Run("NAK", testNak)
	t.Run("cancel", testCancel)
	t.Run("no such link", testNoSuchLink)
}

// runInNewNetns runs TestNetns in a child process in a new network
// namespace and reports its result.
func runInNewNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root to create network namespaces and veth links (euid %d)", os.Geteuid())
	}
	args := []string{"-test.run=^TestNetns$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Skipf("cannot start a process in a new network namespace (clone with CLONE_NEWNET): %v", err)
	}
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in the new network namespace failed: %v", err)
	}
	// With -test.v, a skip's reason is logged (indented) just before the
	// "--- SKIP" line.
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "--- SKIP: TestNetns "):
			t.Skipf("skipped in the new network namespace: %s", last)
		case strings.HasPrefix(line, "    "):
			last = strings.TrimSpace(line)
		}
	}
}

// checkNewNetns refuses to run the namespace tests in the host's network
// namespace (say, with the environment variable set by hand).
func checkNewNetns() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("cannot tell which network namespace this is: %v", err)
	}
	init, err := os.Readlink("/proc/1/ns/net")
	if err == nil && self == init {
		return fmt.Errorf("%s is set but this process is in PID 1's network namespace (%s): refusing to create links there", netnsEnv, self)
	}
	return nil
}

// netns is a network namespace held open by a file descriptor.
type netns struct{ fd int }

// newNetns creates a network namespace without entering it.
func newNetns(t *testing.T) *netns {
	t.Helper()
	var ns netns
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		ns.fd = fd
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(ns.fd) })
	return &ns
}

// do runs f with its OS thread in the namespace.
func (ns *netns) do(f func() error) error {
	return onThread(func() error {
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return f()
	})
}

// onThread runs f on a locked OS thread of a new goroutine and then puts
// the thread back in its network namespace; a thread that cannot go back
// stays locked and dies with the goroutine.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		err = f()
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// pair creates the veth pair name/peer, moves peer into ns, and there
// gives it addr (if valid) and brings it up (if up). The client end
// stays down, for Configure to bring up.
func pair(t *testing.T, ns *netns, name, peer string, addr netip.Prefix, up bool) netlink.Link {
	t.Helper()
	err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer})
	if err != nil {
		t.Skipf("cannot create a veth pair (is the veth module available?): %v", err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(l) })
	p, err := netlink.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(p, ns.fd); err != nil {
		t.Fatalf("move %s to the server's namespace: %v", peer, err)
	}
	err = ns.do(func() error {
		p, err := netlink.LinkByName(peer)
		if err != nil {
			return err
		}
		if addr.IsValid() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
			if err := netlink.AddrAdd(p, a); err != nil {
				return err
			}
		}
		if up {
			return netlink.LinkSetUp(p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("set up %s: %v", peer, err)
	}
	return l
}

// server is a DHCP server on one link of a namespace.
type server struct {
	ip     net.IP
	yiaddr net.IP
	mask   net.IPMask // nil: send none
	router net.IP
	dns    []net.IP
	nak    bool

	// ready waits until the server's link can send; see start.
	ready func()

	mu        sync.Mutex
	discovers int
	requests  int
	classIDs  []string
}

func (s *server) start(t *testing.T, ns *netns, ifname string) {
	t.Helper()
	var srv *server4.Server
	err := ns.do(func() (err error) {
		// The socket belongs to the namespace it was made in, whatever
		// thread serves it later.
		srv, err = server4.NewServer(ifname, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, s.handle)
		return err
	})
	if err != nil {
		t.Fatalf("start the DHCP server on %s: %v", ifname, err)
	}
	// The server's link gets carrier only when Configure brings the
	// client end up, and the kernel starts its transmit queue a moment
	// later (linkwatch, which also sets the operational state): a reply
	// sent before then is dropped. A real server's link has been up for
	// long; this one waits for it.
	s.ready = func() {
		for range 200 {
			up := false
			ns.do(func() error {
				l, err := netlink.LinkByName(ifname)
				up = err == nil && l.Attrs().OperState == netlink.OperUp
				return err
			})
			if up {
				time.Sleep(10 * time.Millisecond)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
}

func (s *server) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	s.mu.Lock()
	var mt dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.discovers++
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		s.requests++
		mt = dhcpv4.MessageTypeAck
		if s.nak {
			mt = dhcpv4.MessageTypeNak
		}
	default:
		s.mu.Unlock()
		return
	}
	s.classIDs = append(s.classIDs, m.ClassIdentifier())
	s.mu.Unlock()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ip)),
	}
	if mt == dhcpv4.MessageTypeNak {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptMessage("address reserved")))
	} else {
		mods = append(mods,
			dhcpv4.WithYourIP(s.yiaddr),
			dhcpv4.WithServerIP(s.ip),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
			dhcpv4.WithOption(dhcpv4.OptBootFileName("agent.ipxe")),
			dhcpv4.WithOption(dhcpv4.OptDomainName("lab.example")),
		)
		if s.mask != nil {
			mods = append(mods, dhcpv4.WithNetmask(s.mask))
		}
		if s.router != nil {
			mods = append(mods, dhcpv4.WithRouter(s.router))
		}
		if s.dns != nil {
			mods = append(mods, dhcpv4.WithDNS(s.dns...))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	s.ready()
	conn.WriteTo(resp.ToBytes(), peer)
}

// listen starts a TCP server on addr in ns that greets every connection.
func listen(t *testing.T, ns *netns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the far side\n")
			c.Close()
		}
	}()
}

// reach dials addr from this namespace: proof that the configured address
// and routes work.
func reach(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("dial %s after Configure: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello from the far side\n" {
		t.Fatalf("read from %s: %q, %v", addr, line, err)
	}
}

func testLease(t *testing.T) {
	ns := newNetns(t)
	l := pair(t, ns, "thaw0", "srv0", netip.MustParsePrefix("10.99.0.1/24"), true)
	s := &server{
		ip: net.IPv4(10, 99, 0, 1), yiaddr: net.IPv4(10, 99, 0, 50), mask: net.CIDRMask(24, 32),
		router: net.IPv4(10, 99, 0, 1), dns: ips("10.99.0.53", "10.99.0.54"),
	}
	s.start(t, ns, "srv0")
	listen(t, ns, "10.99.0.1:7070")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")

	lease, err := Configure(context.Background(), Config{
		Iface: "thaw0", Timeout: 2 * time.Second, Retries: 2, LinkWait: 5 * time.Second,
		ResolvConf: resolv, Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Logf("lease: %v", lease)

	// The lease.
	if lease.Took <= 0 {
		t.Errorf("Took = %v", lease.Took)
	}
	lease.Took = 0
	want := Lease{
		Iface: "thaw0", MAC: l.Attrs().HardwareAddr.String(), Addr: netip.MustParsePrefix("10.99.0.50/24"),
		Router: ips("10.99.0.1")[0], DNS: ips("10.99.0.53", "10.99.0.54"), Domain: "lab.example",
		Server: ips("10.99.0.1")[0], NextServer: ips("10.99.0.1")[0], BootFile: "agent.ipxe", LeaseTime: time.Hour,
	}
	if !reflect.DeepEqual(*lease, want) {
		t.Errorf("lease\n%+v\nwant\n%+v", *lease, want)
	}
	s.mu.Lock()
	if s.discovers != 1 || s.requests != 1 {
		t.Errorf("server saw %d DISCOVER and %d REQUEST, want one each", s.discovers, s.requests)
	}
	for _, c := range s.classIDs {
		if c != ClassID {
			t.Errorf("vendor class %q, want %q", c, ClassID)
		}
	}
	s.mu.Unlock()

	// The system.
	cur, err := netlink.LinkByName("thaw0")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("thaw0 is not up")
	}
	addrs, err := netlink.AddrList(cur, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.50/24" {
		t.Errorf("thaw0 addresses %v, want 10.99.0.50/24", addrs)
	}
	if gw := defaultGateway(t, cur); gw != "10.99.0.1" {
		t.Errorf("default route via %q, want 10.99.0.1", gw)
	}
	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "domain lab.example\nnameserver 10.99.0.53\nnameserver 10.99.0.54\n") {
		t.Errorf("resolv.conf:\n%s", b)
	}
	reach(t, "10.99.0.1:7070")
}

func defaultGateway(t *testing.T, l netlink.Link) string {
	t.Helper()
	routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			return r.Gw.String()
		}
	}
	return ""
}

// testOnlink: a /32 lease whose router lies outside it gets an onlink
// default route, and the router is reachable.
func testOnlink(t *testing.T) {
	ns := newNetns(t)
	pair(t, ns, "thaw1", "srv1", netip.MustParsePrefix("10.98.0.1/24"), true)
	s := &server{ip: net.IPv4(10, 98, 0, 1), yiaddr: net.IPv4(10, 98, 0, 77), router: net.IPv4(10, 98, 0, 1)}
	s.start(t, ns, "srv1")
	listen(t, ns, "10.98.0.1:7070")
	lease, err := Configure(context.Background(), Config{Iface: "thaw1", Timeout: 2 * time.Second, ResolvConf: "-", Logf: t.Logf})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if lease.Addr.String() != "10.98.0.77/32" {
		t.Errorf("lease address %s, want 10.98.0.77/32", lease.Addr)
	}
	cur, _ := netlink.LinkByName("thaw1")
	if gw := defaultGateway(t, cur); gw != "10.98.0.1" {
		t.Errorf("default route via %q, want 10.98.0.1", gw)
	}
	reach(t, "10.98.0.1:7070")
}

// testFirstWins: of three links — no carrier, carrier but no server, a
// server — the third gets the lease and the others are left alone.
func testFirstWins(t *testing.T) {
	ns := newNetns(t)
	pair(t, ns, "dead0", "dead1", netip.Prefix{}, false)
	pair(t, ns, "quiet0", "quiet1", netip.Prefix{}, true)
	pair(t, ns, "good0", "good1", netip.MustParsePrefix("10.97.0.1/24"), true)
	s := &server{ip: net.IPv4(10, 97, 0, 1), yiaddr: net.IPv4(10, 97, 0, 9), mask: net.CIDRMask(24, 32), router: net.IPv4(10, 97, 0, 1)}
	s.start(t, ns, "good1")
	start := time.Now()
	lease, err := Configure(context.Background(), Config{Timeout: 2 * time.Second, LinkWait: 10 * time.Second, ResolvConf: "-", Logf: t.Logf})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if lease.Iface != "good0" || lease.Addr.String() != "10.97.0.9/24" {
		t.Errorf("lease %v, want 10.97.0.9/24 on good0", lease)
	}
	// The dead link must not hold Configure for its whole LinkWait.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Configure took %v", d)
	}
	for _, name := range []string{"dead0", "quiet0"} {
		l, _ := netlink.LinkByName(name)
		if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(addrs) != 0 {
			t.Errorf("%s got addresses %v", name, addrs)
		}
	}
}

// testAllFail: no carrier on one link, no server on the other: the error
// names both, with their MACs, what failed and how many attempts.
func testAllFail(t *testing.T) {
	ns := newNetns(t)
	dead := pair(t, ns, "dead0", "dead1", netip.Prefix{}, false)
	quiet := pair(t, ns, "quiet0", "quiet1", netip.Prefix{}, true)
	start := time.Now()
	_, err := Configure(context.Background(), Config{Timeout: 300 * time.Millisecond, Retries: 1, LinkWait: time.Second, ResolvConf: "-", Logf: t.Logf})
	t.Logf("error after %v: %v", time.Since(start), err)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if !errors.Is(err, ErrNoCarrier) || !errors.Is(err, ErrNoAnswer) {
		t.Errorf("error %v does not match ErrNoCarrier and ErrNoAnswer", err)
	}
	if len(e.Links) != 2 || e.Links[0].Link != "dead0" || e.Links[1].Link != "quiet0" {
		t.Fatalf("links %v, want dead0 and quiet0", e.Links)
	}
	if e.Links[0].Attempts != 0 || e.Links[1].Attempts != 2 {
		t.Errorf("attempts %d and %d, want 0 and 2", e.Links[0].Attempts, e.Links[1].Attempts)
	}
	for _, want := range []string{
		"dead0 (" + dead.Attrs().HardwareAddr.String() + "): no carrier after 1s",
		"quiet0 (" + quiet.Attrs().HardwareAddr.String() + "): no DHCP server answered: no offer to DISCOVER after 2 attempts of 300ms",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func testNak(t *testing.T) {
	ns := newNetns(t)
	pair(t, ns, "thaw2", "srv2", netip.MustParsePrefix("10.96.0.1/24"), true)
	s := &server{ip: net.IPv4(10, 96, 0, 1), yiaddr: net.IPv4(10, 96, 0, 5), mask: net.CIDRMask(24, 32), nak: true}
	s.start(t, ns, "srv2")
	_, err := Configure(context.Background(), Config{Iface: "thaw2", Timeout: time.Second, Retries: -1, ResolvConf: "-", Logf: t.Logf})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "server 10.96.0.1 sent NAK for 10.96.0.5: address reserved") {
		t.Errorf("error %v, want ErrRefused naming the server, the address and its message", err)
	}
}

func testCancel(t *testing.T) {
	ns := newNetns(t)
	pair(t, ns, "quiet0", "quiet1", netip.Prefix{}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Configure(ctx, Config{Timeout: 5 * time.Second, Retries: 10, ResolvConf: "-"})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Configure returned %v after its context ended", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not match context.DeadlineExceeded", err)
	}
}

func testNoSuchLink(t *testing.T) {
	_, err := Configure(context.Background(), Config{Iface: "nope0"})
	if !errors.Is(err, ErrNoLink) || !strings.Contains(err.Error(), "no link named nope0 (links: lo") {
		t.Errorf("error %v, want ErrNoLink listing the links", err)
	}
	_, err = Configure(context.Background(), Config{})
	if !errors.Is(err, ErrNoLink) || !strings.Contains(err.Error(), "no Ethernet link") {
		t.Errorf("error %v, want ErrNoLink: no Ethernet link", err)
	}
}
