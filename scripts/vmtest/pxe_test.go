//go:build vm

package vmtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

// M1's network, built by the test: a namespace holding a bridge with the
// address every agent case names (10.0.2.2, QEMU's user network host), the
// target's tap on it, thaw serve and thaw's proxy-DHCP dnsmasq; and, on a
// veth, a second namespace holding the network's own DHCP server, a plain
// dnsmasq that knows nothing of PXE and leases 10.0.2.15 (the address the
// server had) with 10.0.2.2 as its router.
const (
	pxeHost = "10.0.2.2"
	pxeTap  = "tap0"
)

func (n *pxeNet) wrap() []string { return []string{"ip", "netns", "exec", n.ns} }

type pxeNet struct {
	name, ns, dhcpNS string
}

// pxeNetFor names a case's namespaces (unique to this test process: the
// PXE cases run two at a time).
func pxeNetFor(name string) *pxeNet {
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	return &pxeNet{name: name, ns: "thaw-" + name + "-" + id, dhcpNS: "thaw-" + name + "-dhcp-" + id}
}

// checkTFTPLoader fetches the BIOS loader from dnsmasq's TFTP, as a PXE
// ROM that is not iPXE would, and compares it with Debian's.
func checkTFTPLoader(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", pxeNetFor(name).ns, "curl", "-sf", "tftp://"+pxeHost+"/undionly.kpxe").Output()
	want, _ := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if err != nil || len(want) == 0 || !bytes.Equal(out, want) {
		t.Errorf("undionly.kpxe over dnsmasq's TFTP: %d bytes, %v (want the %d bytes of Debian's)", len(out), err, len(want))
	}
}

func newPXENet(t *testing.T, name string) *pxeNet {
	t.Helper()
	for _, tool := range []string{"ip", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (install iproute2 and dnsmasq-base)", tool, err)
		}
	}
	n := pxeNetFor(name)
	// Deleted last: every process in them is stopped by the cleanups
	// registered after this one.
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.ns).Run()
		exec.Command("ip", "netns", "del", n.dhcpNS).Run()
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.ns)
	run("netns", "add", n.dhcpNS)
	run("-n", n.ns, "link", "set", "lo", "up")
	run("-n", n.ns, "link", "add", "br0", "type", "bridge")
	run("-n", n.ns, "addr", "add", pxeHost+"/24", "dev", "br0")
	run("-n", n.ns, "link", "set", "br0", "up")
	run("-n", n.ns, "tuntap", "add", "dev", pxeTap, "mode", "tap")
	run("-n", n.ns, "link", "set", pxeTap, "master", "br0", "up")
	run("-n", n.ns, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", n.dhcpNS)
	run("-n", n.ns, "link", "set", "veth0", "master", "br0", "up")
	run("-n", n.dhcpNS, "link", "set", "lo", "up")
	run("-n", n.dhcpNS, "addr", "add", "10.0.2.3/24", "dev", "eth0")
	run("-n", n.dhcpNS, "link", "set", "eth0", "up")
	dir := t.TempDir()
	startDaemon(t, name+"-dhcp", "ip", "netns", "exec", n.dhcpNS, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=eth0", "--bind-interfaces", "--user=root", "--log-dhcp",
		"--pid-file="+filepath.Join(dir, "dhcp.pid"), "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--dhcp-range=10.0.2.15,10.0.2.15,255.255.255.0,1h", "--dhcp-option=option:router,"+pxeHost)
	return n
}

// startProxy runs dnsmasq with the tree's own dnsmasq.conf.
func (n *pxeNet) startProxy(t *testing.T, tree string) {
	startDaemon(t, n.name+"-proxy", "ip", "netns", "exec", n.ns, "dnsmasq", "--no-daemon", "--user=root",
		"--pid-file="+filepath.Join(t.TempDir(), "proxy.pid"), "--conf-file="+filepath.Join(tree, "dnsmasq.conf"))
}

// startDaemon runs a server for the test's life, its output in logDir.
func startDaemon(t *testing.T, name string, argv ...string) {
	t.Helper()
	t.Logf("host$ %s", strings.Join(argv, " "))
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
}

// writePXETree writes the tree with thaw media pxe, as an operator would:
// the agent parameters through its flags.
func writePXETree(t *testing.T, dir, kernel, initrd string, port int, params string) string {
	t.Helper()
	agent := filepath.Join(dir, "agent")
	os.MkdirAll(agent, 0o755)
	for src, name := range map[string]string{kernel: "vmlinuz", initrd: "initramfs.cpio.gz"} {
		if err := os.Symlink(src, filepath.Join(agent, name)); err != nil {
			t.Fatal(err)
		}
	}
	tree := filepath.Join(dir, "pxe")
	args := []string{"media", "pxe", "--out", tree, "--url", fmt.Sprintf("http://%s:%d/boot/", pxeHost, port),
		"--subnet", "10.0.2.0", "--interface", "br0", "--agent", agent, "--arg", "panic=-1"}
	for _, p := range strings.Fields(params) {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "thaw.image":
			args = append(args, "--image", v)
		case "thaw.disk":
			args = append(args, "--disk", v)
		case "thaw.token":
			args = append(args, "--token-file", readTokenFile(t))
		case "thaw.log":
			args = append(args, "--log", v)
		case "thaw.kernel":
			// thaw media pxe names the tree's own kernel.
		default:
			args = append(args, "--arg", p)
		}
	}
	t.Logf("host$ thaw %s", strings.Join(args, " "))
	out, err := exec.Command(thawBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("thaw media pxe: %v\n%s", err, out)
	}
	return tree
}

// fileSHA256 is the hex SHA-256 of a file, for thaw.kernel=URL#sha256=.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkScreen dumps the VM's VGA screen to logDir/NAME.vga.png (kept as
// an artefact) and reads it as a person would, by OCR: each line wanted
// must be in the picture's text. Case and spaces are ignored, as OCR
// splits and joins words at the VGA font's wide spacing.
func checkScreen(t *testing.T, vm *harness.VM, name string, want ...string) {
	t.Helper()
	time.Sleep(2 * time.Second) // the VGA console is written after the serial one
	png := filepath.Join(logDir, name+".vga.png")
	if err := vm.Screendump(png, 2); err != nil {
		t.Fatal(err)
	}
	text, err := harness.OCR(png)
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), "")) }
	got := norm(text)
	for _, w := range want {
		if !strings.Contains(got, norm(w)) {
			t.Errorf("the VGA screen (%s) lacks %q; OCR read:\n%s", png, w, text)
		}
	}
}
