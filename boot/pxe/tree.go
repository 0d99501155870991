package pxe

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files the tree holds, by their names in it.
const (
	ScriptName   = "boot.ipxe"          // the iPXE script every machine chains to
	KernelName   = "vmlinuz"            // the agent kernel
	InitrdName   = "initramfs.cpio.gz"  // the agent initramfs
	BIOSLoader   = "undionly.kpxe"      // iPXE for BIOS PXE ROMs (client arch 0)
	UEFILoader   = "ipxe.efi"           // iPXE for UEFI x86-64 (client arch 7 and 9)
	DnsmasqConf  = "dnsmasq.conf"       // proxy-DHCP and TFTP for dnsmasq
	MachinesDir  = "machines"           // per-machine scripts, by MAC
	dnsmasqTFTP  = "tftp"               // dnsmasq's TFTP root (the two loaders)
	machineMACRE = "${net0/mac:hexhyp}" // how iPXE names a machine's script
)

// Tree describes a PXE boot tree: the two iPXE loaders served by dnsmasq's
// TFTP, the script and the agent served by HTTP (thaw serve --boot), and
// a dnsmasq.conf for proxy-DHCP beside the network's own DHCP server.
type Tree struct {
	URL       string // where the tree is served over HTTP(S), ending in /
	Subnet    string // the network dnsmasq answers PXE on, e.g. 10.0.0.0
	Interface string // dnsmasq's interface; "" for all
	// Server is the boot server's IPv4 address, the next-server of the
	// proxy's answers (iPXE ignores a ProxyDHCP answer with none); ""
	// takes URL's host, which must then be an address.
	Server   string
	AgentDir string   // holds vmlinuz and initramfs.cpio.gz
	IPXEDir  string   // holds undionly.kpxe and ipxe.efi (Debian's ipxe package)
	Args     []string // the agent's kernel arguments
	// MAC, when set, writes only machines/MAC.ipxe: that machine boots
	// with Args, every other one with the tree's boot.ipxe.
	MAC string
}

// MachineScript is the tree path of the script for a MAC address.
func MachineScript(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("pxe: %q is not an Ethernet MAC address", mac)
	}
	return MachinesDir + "/" + strings.ReplaceAll(hw.String(), ":", "-") + ".ipxe", nil
}

// check validates t before anything is written.
func (t Tree) check() error {
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(u.Path, "/") {
		return fmt.Errorf("pxe: the tree's URL %q must be http(s)://HOST[:PORT]/PATH/ (where thaw serve --boot serves it, ending in /)", t.URL)
	}
	if t.MAC == "" {
		if ip := net.ParseIP(t.server(u)); ip == nil || ip.To4() == nil {
			return fmt.Errorf("pxe: the boot server %q is not an IPv4 address: give its address (--server-ip), which dnsmasq hands out as next-server", t.server(u))
		}
		if ip := net.ParseIP(t.Subnet); ip == nil || ip.To4() == nil {
			return fmt.Errorf("pxe: the subnet %q is not an IPv4 address (dnsmasq answers PXE on that network, e.g. 10.0.0.0)", t.Subnet)
		}
		if strings.ContainsAny(t.Interface, " \t\r\n,=") {
			return fmt.Errorf("pxe: the interface %q is not an interface name", t.Interface)
		}
	}
	return nil
}

// server is the next-server address: Server, or the URL's host.
func (t Tree) server(u *url.URL) string {
	if t.Server != "" {
		return t.Server
	}
	return u.Hostname()
}

// sources lists what is copied into the tree: tree name → source path.
func (t Tree) sources() [][2]string {
	if t.MAC != "" {
		return nil
	}
	return [][2]string{
		{KernelName, filepath.Join(t.AgentDir, "vmlinuz")},
		{InitrdName, filepath.Join(t.AgentDir, "initramfs.cpio.gz")},
		{dnsmasqTFTP + "/" + BIOSLoader, filepath.Join(t.IPXEDir, BIOSLoader)},
		{dnsmasqTFTP + "/" + UEFILoader, filepath.Join(t.IPXEDir, UEFILoader)},
	}
}

// Write writes the tree into dir and returns the tree paths it wrote.
// Every input is checked, and every source file opened, before the first
// byte is written.
func Write(dir string, t Tree) ([]string, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	// A second stage takes the agent kernel from the tree, checked by its
	// digest (thaw.kernel=): the initramfs need not carry a copy.
	kernel := filepath.Join(t.AgentDir, "vmlinuz")
	if t.MAC != "" {
		kernel = filepath.Join(dir, KernelName)
	}
	sum, err := fileSHA256(kernel)
	if err != nil {
		return nil, fmt.Errorf("pxe: the agent kernel: %w (build it with make initramfs; with --mac, write the tree first)", err)
	}
	args := slices.Clone(t.Args)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "thaw.kernel=") }) {
		args = append(args, "thaw.kernel="+t.URL+KernelName+"#sha256="+sum)
	}
	boot := Config{KernelURL: t.URL + KernelName, InitrdURL: t.URL + InitrdName, Args: args}
	script, err := Script(boot)
	if err != nil {
		return nil, err
	}
	// What goes into the tree, all opened or made before the first write.
	type treeFile struct {
		name string
		r    io.Reader
	}
	var files []treeFile
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	for _, s := range t.sources() {
		f, err := os.Open(s[1])
		if err != nil {
			hint := "build it with make initramfs, or name its directory with --agent"
			if strings.HasPrefix(s[0], dnsmasqTFTP) {
				hint = "install Debian's ipxe package (apt-get install ipxe), or name its directory with --ipxe"
			}
			return nil, fmt.Errorf("pxe: %s: %w: %s", s[0], err, hint)
		}
		opened = append(opened, f)
		files = append(files, treeFile{s[0], f})
	}
	if t.MAC != "" {
		name, err := MachineScript(t.MAC)
		if err != nil {
			return nil, err
		}
		files = append(files, treeFile{name, strings.NewReader(script)})
	} else {
		files = append(files, treeFile{ScriptName, strings.NewReader(chainScript(t.URL, script))},
			treeFile{DnsmasqConf, strings.NewReader(dnsmasqConf(t, dir))})
	}

	var wrote []string
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return wrote, err
		}
		if err := writeFile(path, f.r); err != nil {
			return wrote, err
		}
		wrote = append(wrote, f.name)
	}
	return wrote, nil
}

// chainScript is boot.ipxe: a machine with its own script in machines/
// boots that one; every other machine boots the default.
func chainScript(base, def string) string {
	head := "#!ipxe\n" +
		"echo thaw restore agent: network boot of ${net0/mac}\n" +
		"chain --autofree " + base + MachinesDir + "/" + machineMACRE + ".ipxe || goto default\n" +
		":default\n"
	return head + strings.TrimPrefix(def, "#!ipxe\n")
}

// dnsmasqConf is proxy-DHCP: dnsmasq hands out no addresses, only the
// boot loader by client architecture (option 93) to PXE ROMs, and this
// tree's script over HTTP to iPXE (which sends option 175).
func dnsmasqConf(t Tree, dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	var b strings.Builder
	b.WriteString("# thaw PXE: proxy-DHCP beside the network's own DHCP server.\n")
	b.WriteString("# Run: dnsmasq --no-daemon --conf-file=" + filepath.Join(abs, DnsmasqConf) + "\n")
	b.WriteString("# and serve the tree: thaw serve --dir STORE --boot " + abs + " …\n")
	b.WriteString("port=0\n")
	b.WriteString("log-dhcp\n")
	if t.Interface != "" {
		b.WriteString("interface=" + t.Interface + "\n")
		b.WriteString("bind-interfaces\n")
	}
	b.WriteString("dhcp-range=" + t.Subnet + ",proxy\n")
	b.WriteString("enable-tftp\n")
	b.WriteString("tftp-root=" + filepath.Join(abs, dnsmasqTFTP) + "\n")
	b.WriteString("dhcp-match=set:ipxe,175\n")
	b.WriteString(`pxe-service=tag:!ipxe,x86PC,"thaw restore agent (BIOS)",` + BIOSLoader + "\n")
	b.WriteString(`pxe-service=tag:!ipxe,X86-64_EFI,"thaw restore agent (UEFI)",` + UEFILoader + "\n")
	b.WriteString(`pxe-service=tag:!ipxe,BC_EFI,"thaw restore agent (UEFI)",` + UEFILoader + "\n")
	// With a next-server: iPXE takes a ProxyDHCP answer only if it has a
	// next-server and a file name, or a PXE menu.
	u, _ := url.Parse(t.URL)
	b.WriteString("dhcp-boot=tag:ipxe," + t.URL + ScriptName + ",," + t.server(u) + "\n")
	return b.String()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFile writes r to path through a new temporary file renamed over it.
func writeFile(path string, r io.Reader) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("pxe: %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return errors.Join(err, os.Remove(f.Name()))
	}
	return nil
}
