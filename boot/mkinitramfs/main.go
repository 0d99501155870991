// Command mkinitramfs builds the restore agent's boot files:
//
//	build/agent/vmlinuz             the agent kernel (Debian 13, full flavour)
//	build/agent/initramfs.cpio.gz   u-root core commands, thaw as uinit
//	                                ("thaw agent"), the agent kernel's NIC and
//	                                disk controller modules with modules.alias
//	                                for coldplug, with -kernel-copy the agent
//	                                kernel itself at /boot/vmlinuz (for a
//	                                second stage with a replayed memory map;
//	                                without it the agent fetches
//	                                thaw.kernel=), trusted keys at
//	                                /etc/thaw/pubkeys, and the CA roots for
//	                                https (Debian's ca-certificates, with
//	                                -ca FILE added)
//
// Usage: go run ./boot/mkinitramfs [-out DIR] [-kernel NAME] [-pubkey FILE]… [-allow-cmdline-key] [-ca FILE]… [-identity FILE]… [-kernel-copy] [-no-modules]
//
// The kernel comes from the cache that scripts/fetch-kernels.sh fills
// (make kernels). The u-root build runs `go run github.com/u-root/u-root`
// inside this module, so the commands' versions are go.mod's.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/boot/initramfs"
	"github.com/thawlinux/thaw/boot/kernelcache"
)

// Commands are the u-root commands of the rescue shell.
var Commands = []string{
	"init", "gosh", "ls", "cat", "cp", "dmesg", "ip", "mount", "umount",
	"lsmod", "insmod", "pci", "poweroff", "shutdown", "sync", "dd", "blkid",
	"gpt", "hexdump", "ps", "kill", "mkdir", "rm", "mv", "ln", "echo", "grep",
	"head", "tail", "wget", "dhclient", "kexec", "free", "df", "uname", "sleep",
	"md5sum", "shasum", "more",
}

// Drivers are the agent kernel's modules for common NICs and disk
// controllers; their dependencies come along.
var Drivers = []string{
	// virtual machines
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "vmxnet3", "vmw_pvscsi", "hv_netvsc", "hv_storvsc", "virtio_rng",
	// NICs
	"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "tg3", "bnxt_en", "r8169", "mlx4_en", "mlx5_core",
	// disk controllers and disks
	"ahci", "ata_piix", "nvme", "sd_mod", "megaraid_sas", "mpt3sas", "smartpqi",
	// the thaw stick (USB mass storage, FAT) and a USB keyboard
	"xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas", "usbhid", "hid_generic",
	"vfat", "nls_cp437", "nls_ascii", "nls_utf8",
}

var (
	allowCmdlineKey bool
	kernelCopy      bool
	extraCAs        []string
	identities      []string
)

// caBundle is Debian's bundle of CA roots (the ca-certificates package):
// the agent fetches https:// images with them.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	out := flag.String("out", "build/agent", "output directory")
	kname := flag.String("kernel", "debian13-full", "agent kernel from the cache (make kernels)")
	noModules := flag.Bool("no-modules", false, "leave the driver modules out (to measure their size)")
	flag.BoolVar(&kernelCopy, "kernel-copy", false, "put a copy of the agent kernel at /boot/vmlinuz for a second stage (11.6 MiB); without it a second stage fetches thaw.kernel=, which thaw media pxe writes")
	var pubkeys []string
	flag.Func("pubkey", "minisign public key to trust (repeat); baked-in keys are a pin: thaw.pubkey= is then refused", func(s string) error { pubkeys = append(pubkeys, s); return nil })
	flag.BoolVar(&allowCmdlineKey, "allow-cmdline-key", false, "trust thaw.pubkey= beside the baked-in keys")
	flag.Func("ca", "a PEM CA certificate the agent trusts for https beside Debian's (repeat)", func(s string) error { extraCAs = append(extraCAs, s); return nil })
	flag.Func("identity", "an age identity (thaw keygen --recipient) that decrypts bundles (repeat); the initramfs then holds a secret: keep it so", func(s string) error { identities = append(identities, s); return nil })
	flag.Parse()
	if err := run(*out, *kname, pubkeys, !*noModules); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run(out, kname string, pubkeys []string, withModules bool) error {
	k, err := kernelcache.Load(kname)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mkinitramfs")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The base archive: what u-root does not build.
	base := initramfs.New()
	kernel, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		return err
	}
	copied := 0
	if kernelCopy {
		base.File("boot/vmlinuz", kernel, 0o644)
		copied = len(kernel)
	}
	base.File("etc/thaw/agent-kernel", []byte(k.Release+"\n"), 0o644)
	for i, p := range pubkeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		base.File(fmt.Sprintf("etc/thaw/pubkeys/%d-%s", i, filepath.Base(p)), b, 0o644)
	}
	roots, err := os.ReadFile(caBundle)
	if err != nil {
		return fmt.Errorf("the CA roots for https: %w (install Debian's ca-certificates)", err)
	}
	for _, p := range extraCAs {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("-ca: %w", err)
		}
		roots = append(append(roots, '\n'), b...)
	}
	base.File(strings.TrimPrefix(caBundle, "/"), roots, 0o644)
	for i, p := range identities {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("-identity: %w", err)
		}
		base.File(fmt.Sprintf("etc/thaw/identities/%d-%s", i, filepath.Base(p)), b, 0o600)
	}
	if allowCmdlineKey {
		base.File("etc/thaw/allow-cmdline-key", []byte("thaw.pubkey= is trusted beside the baked-in keys\n"), 0o644)
	}
	nmod := 0
	if withModules {
		if nmod, err = addModules(base, k); err != nil {
			return err
		}
	}
	basePath := filepath.Join(tmp, "base.cpio")
	if err := os.WriteFile(basePath, base.Raw(), 0o644); err != nil {
		return err
	}

	// u-root: core commands and thaw in one busybox, thaw as uinit.
	cpioPath := filepath.Join(tmp, "initramfs.cpio")
	// gosh with its plain line reader (goshsmall): the terminal's own
	// line editing, on any serial console. The full-screen editor hung
	// after Enter on a slow machine.
	args := []string{"run", "github.com/u-root/u-root", "-o", cpioPath, "-base", basePath,
		"-uinitcmd", "thaw agent", "-defaultsh", "gosh", "-go-build-tags", "goshsmall"}
	for _, c := range Commands {
		args = append(args, "github.com/u-root/u-root/cmds/core/"+c)
	}
	args = append(args, "./cmd/thaw")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		os.Stderr.Write(log.Bytes())
		return fmt.Errorf("u-root build: %w", err)
	}
	raw, err := os.ReadFile(cpioPath)
	if err != nil {
		return err
	}
	gz := filepath.Join(out, "initramfs.cpio.gz")
	if err := writeGzip(gz, raw); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(out, "vmlinuz"), k.Vmlinuz); err != nil {
		return err
	}
	st, _ := os.Stat(gz)
	fmt.Printf("agent kernel %s (%s)\n", k.Release, kname)
	fmt.Printf("%s: %.1f MiB (%.1f MiB uncompressed; %d modules; agent kernel copy %.1f MiB)\n",
		gz, float64(st.Size())/(1<<20), float64(len(raw))/(1<<20), nmod, float64(copied)/(1<<20))
	return nil
}

// addModules adds the driver modules, uncompressed, their dependencies
// and the depmod files under lib/modules/RELEASE.
func addModules(r *initramfs.Archive, k *kernelcache.Kernel) (int, error) {
	dep, err := os.ReadFile(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return 0, err
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, line := range strings.Split(string(dep), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		b := filepath.Base(mod)
		byName[strings.ReplaceAll(b[:strings.Index(b, ".ko")], "-", "_")] = mod
	}
	want := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		if want[p] {
			return
		}
		want[p] = true
		for _, d := range deps[p] {
			visit(d)
		}
	}
	builtin, _ := os.ReadFile(filepath.Join(k.Modules, "modules.builtin"))
	for _, n := range Drivers {
		p, ok := byName[n]
		if !ok {
			if bytes.Contains(builtin, []byte("/"+n+".ko")) {
				continue
			}
			return 0, fmt.Errorf("agent kernel %s has no module %s", k.Release, n)
		}
		visit(p)
	}
	var mods []string
	for p := range want {
		mods = append(mods, p)
	}
	sort.Strings(mods)
	prefix := "lib/modules/" + k.Release + "/"
	// The modules go in uncompressed (the archive is compressed as a
	// whole): the agent then loads them with finit_module as they are.
	// Decompressing .ko.xz in the agent took most of coldplug's time
	// under emulation (libata: 0.2 s natively, seconds under TCG).
	plain := func(p string) string {
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			if s, ok := strings.CutSuffix(p, ".ko"+ext); ok {
				return s + ".ko"
			}
		}
		return p
	}
	for _, p := range mods {
		f, err := os.Open(filepath.Join(k.Modules, p))
		if err != nil {
			return 0, err
		}
		b, err := plan.Decompress(filepath.Base(p), f)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("module %s: %w", p, err)
		}
		r.File(prefix+plain(p), b, 0o644)
	}
	// modules.dep lists only what is here, so a lookup never names a
	// missing file; the alias tables stay whole (coldplug reports an
	// alias whose module is absent).
	var sub bytes.Buffer
	for _, p := range mods {
		var ds []string
		for _, d := range deps[p] {
			ds = append(ds, plain(d))
		}
		// depmod's format: "path:" alone, or "path: dep dep" (a space
		// after a colon with no dependency reads as an empty one).
		fmt.Fprintf(&sub, "%s:%s\n", plain(p), strings.TrimRight(" "+strings.Join(ds, " "), " "))
	}
	r.File(prefix+"modules.dep", sub.Bytes(), 0o644)
	for _, f := range []string{"modules.alias", "modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if err := r.HostFile(prefix+f, filepath.Join(k.Modules, f), 0o644); err != nil {
			return 0, err
		}
	}
	return len(mods), nil
}

func writeGzip(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
