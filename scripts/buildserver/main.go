// Command buildserver builds the real Debian server guests the end-to-end
// tests and the demo use, and caches each by the hash of its recipe:
//
//	go run ./scripts/buildserver [-suite trixie|bookworm] CACHE
//
// mmdebstrap makes a trixie root filesystem (systemd, udev, the cloud kernel
// with its initramfs-tools initrd, lvm2, a stateful workload service, a test
// command channel), mke2fs -d turns it into an ext4 image without mounting,
// and a builder VM (this host has no device-mapper) puts LVM on partition 1
// of a new GPT disk and copies the image into the root LV and formats the swap
// LV (root and swap on device-mapper: the server can move to another disk
// controller). Partition 2 is swap-formatted but not in use: the resume device
// of systemctl hibernate. Redis holds a random key in RAM only (redis-seed).
// The trixie build also writes the same server with root and swap on plain
// partitions (CACHE/server/current-plain), the server thaw prepare is for. The result lands in CACHE/server/HASH and
// CACHE/server/current (trixie, Debian 13) or CACHE/server/current-bookworm
// (Debian 12) points to it.
//
// With -luks the trixie server's root LV holds a LUKS2 volume (LUKS on
// LVM) that its own initramfs opens with a key file it carries
// (cryptsetup-initramfs, KEYFILE_PATTERN): root is /dev/mapper/root_crypt.
// It lands in CACHE/server/current-luks.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

//go:embed main.go
var self embed.FS

var (
	suite = "trixie"
	luks  bool
)

const (
	mirror   = "http://deb.debian.org/debian"
	packages = "systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,lvm2,e2fsprogs,procps,kmod,iproute2,busybox,redis-server"
	vg       = "vg0"
	rootMB   = 1536
	lvSwapMB = 768 // vg0/swap: the swap in use
	diskMB   = 3072
	lvmMB    = 2400
	swapMB   = 600 // partition 2: the resume device of systemctl hibernate
)

func main() {
	flag.StringVar(&suite, "suite", suite, "Debian suite: trixie (Debian 13) or bookworm (Debian 12)")
	flag.BoolVar(&luks, "luks", false, "root on a LUKS2 volume in the root LV (trixie)")
	flag.Parse()
	if flag.NArg() != 1 || (suite != "trixie" && suite != "bookworm") || (luks && suite != "trixie") {
		fmt.Fprintln(os.Stderr, "usage: buildserver [-suite trixie|bookworm | -luks] CACHE")
		os.Exit(2)
	}
	if err := build(flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "buildserver:", err)
		os.Exit(1)
	}
}

func logf(f string, a ...any) { fmt.Fprintf(os.Stderr, "buildserver: "+f+"\n", a...) }

func recipeHash(serverDir string) (string, error) {
	h := sha256.New()
	src, _ := self.ReadFile("main.go")
	h.Write(src)
	h.Write([]byte(suite))
	if luks {
		h.Write([]byte("+luks"))
	}
	for _, f := range []string{"workload", "testctl", "units", "builder-init.sh", "redis-seed"} {
		b, err := os.ReadFile(filepath.Join(serverDir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16], nil
}

func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func uuid4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func build(cache string) error {
	start := time.Now()
	cache, _ = filepath.Abs(cache)
	serverSrc, err := filepath.Abs("scripts/server")
	if err != nil {
		return err
	}
	key, err := recipeHash(serverSrc)
	if err != nil {
		return fmt.Errorf("run from the top of the thaw tree: %w", err)
	}
	out := filepath.Join(cache, "server", key)
	current := filepath.Join(cache, "server", "current")
	if suite != "trixie" {
		current += "-" + suite
	}
	if luks {
		current += "-luks"
	}
	if _, err := os.Stat(filepath.Join(out, "done")); err == nil {
		logf("%s server guest %s is cached in %s", suite, key, out)
		return linkCurrent(out, current)
	}
	work, err := os.MkdirTemp(filepath.Join(cache), "server-build-")
	if err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return err
		}
		if work, err = os.MkdirTemp(cache, "server-build-"); err != nil {
			return err
		}
	}
	defer os.RemoveAll(work)
	// A go.mod keeps `go ... ./...` in the thaw tree out of the root
	// filesystem being built here.
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module buildserver.invalid/work\n"), 0o644); err != nil {
		return err
	}
	root := filepath.Join(work, "root")
	swapUUID := uuid4()
	pkgs, rootDev, luksUUID := packages, "/dev/mapper/"+vg+"-root", ""
	if luks {
		pkgs += ",cryptsetup,cryptsetup-initramfs"
		rootDev, luksUUID = "/dev/mapper/root_crypt", uuid4()
	}

	// Files copied into the root filesystem.
	stage := filepath.Join(work, "stage")
	units, err := os.ReadFile(filepath.Join(serverSrc, "units"))
	if err != nil {
		return err
	}
	parts := strings.Split(string(units), "---\n")
	files := map[string]string{
		"etc/systemd/system/workload.service":                 parts[0],
		"etc/systemd/system/testctl.service":                  parts[1],
		"etc/systemd/system/redis-seed.service":               parts[2],
		"etc/systemd/system/redis-server.service.d/thaw.conf": parts[3],
		// Root and swap on LVM: a server that can move to another disk
		// controller. Partition 2 is swap-formatted but not in use: the
		// resume device of systemctl hibernate (tests swapon it first).
		"etc/fstab":                                fmt.Sprintf("%s / ext4 errors=remount-ro 0 1\n/dev/mapper/%s-swap none swap sw 0 0\n", rootDev, vg),
		"etc/hostname":                             "thaw-server\n",
		"etc/systemd/network/80-dhcp.network":      "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n",
		"etc/initramfs-tools/conf.d/resume":        "RESUME=PARTUUID=" + swapUUID + "\n",
		"etc/systemd/system.conf.d/timeout.conf":   "[Manager]\nDefaultTimeoutStopSec=10s\n",
		"etc/systemd/journald.conf.d/console.conf": "[Journal]\nStorage=persistent\n",
	}
	if luks {
		// The initramfs opens root_crypt with the key file it carries
		// (the 'initramfs' option: the hook cannot see the volume from
		// the build chroot), udev's LVM rules having activated vg0.
		files["etc/crypttab"] = fmt.Sprintf("root_crypt UUID=%s /etc/keys/root.key luks,discard,initramfs\n", luksUUID)
		files["etc/cryptsetup-initramfs/conf-hook"] = "CRYPTSETUP=y\nKEYFILE_PATTERN=\"/etc/keys/*.key\"\n"
		files["etc/initramfs-tools/conf.d/umask"] = "UMASK=0077\n"
	}
	for name, body := range files {
		p := filepath.Join(stage, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	if luks {
		key := make([]byte, 64)
		rand.Read(key)
		os.MkdirAll(filepath.Join(stage, "etc/keys"), 0o700)
		if err := os.WriteFile(filepath.Join(stage, "etc/keys/root.key"), key, 0o400); err != nil {
			return err
		}
	}
	for src, dst := range map[string]string{"workload": "usr/local/bin/workload", "testctl": "usr/local/sbin/testctl", "redis-seed": "usr/local/sbin/redis-seed"} {
		b, err := os.ReadFile(filepath.Join(serverSrc, src))
		if err != nil {
			return err
		}
		p := filepath.Join(stage, dst)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			return err
		}
	}

	logf("mmdebstrap %s (%s)", suite, pkgs)
	if err := run("mmdebstrap", "--mode=root", "--variant=minbase", "--include="+pkgs,
		"--essential-hook=mkdir -p \"$1/etc/initramfs-tools/conf.d\" && cp "+filepath.Join(stage, "etc/initramfs-tools/conf.d/resume")+" \"$1/etc/initramfs-tools/conf.d/\"",
		"--customize-hook=cp -a "+stage+"/. \"$1/\"",
		"--customize-hook=chroot \"$1\" systemctl enable workload.service testctl.service redis-seed.service systemd-networkd.service",
		"--customize-hook=chroot \"$1\" passwd -d root",
		"--customize-hook=chroot \"$1\" update-initramfs -u -k all",
		suite, root, mirror); err != nil {
		return err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	initrd, _ := filepath.Glob(filepath.Join(root, "boot", "initrd.img-*"))
	if len(vmlinuz) != 1 || len(initrd) != 1 {
		return fmt.Errorf("want one kernel and one initrd in %s/boot, found %v %v", root, vmlinuz, initrd)
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+`).MatchString(release) {
		return fmt.Errorf("odd kernel release %q", release)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{vmlinuz[0]: "vmlinuz", initrd[0]: "initrd.img"} {
		if err := run("cp", src, filepath.Join(out, dst)); err != nil {
			return err
		}
	}
	k := &harness.Kernel{Name: "server", Release: release, Vmlinuz: filepath.Join(out, "vmlinuz"),
		Modules: filepath.Join(root, "usr", "lib", "modules", release)}
	if _, err := os.Stat(k.Modules); err != nil {
		k.Modules = filepath.Join(root, "lib", "modules", release) // not merged-/usr
	}

	logf("root filesystem image (mke2fs -d, %d MiB)", rootMB)
	rootImg := filepath.Join(work, "root.ext4")
	if err := run("mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", root, rootImg, fmt.Sprintf("%dM", rootMB)); err != nil {
		return err
	}
	disk := filepath.Join(out, "disk.img")
	if err := harness.MakeGPTDisk(disk, diskMB, []harness.Part{
		{Name: "lvm", SizeMB: lvmMB, LVM: true},
		{Name: "swap", SizeMB: swapMB, Swap: true, GUID: swapUUID},
	}); err != nil {
		return err
	}

	logf("builder VM: LVM on partition 1, root image into %s/root", vg)
	ir := harness.NewInitramfs()
	if err := ir.Busybox(harness.BusyboxPath); err != nil {
		return err
	}
	for _, a := range []string{"chroot", "grep", "ls", "dd", "mkswap"} {
		ir.Symlink("bin/"+a, "busybox")
	}
	mods := []string{"virtio_pci", "virtio_blk", "dm_mod"}
	if luks {
		mods = append(mods, "dm_crypt", "xts", "aesni_intel", "algif_skcipher")
	}
	if err := ir.Modules(k, mods...); err != nil {
		return err
	}
	init, err := os.ReadFile(filepath.Join(serverSrc, "builder-init.sh"))
	if err != nil {
		return err
	}
	ir.File("init", init, 0o755)
	args := fmt.Sprintf("builder.vg=%s builder.rootmb=%d builder.swapmb=%d", vg, rootMB, lvSwapMB)
	if luks {
		// The LUKS2 header (16 MiB) comes out of the root LV.
		args = fmt.Sprintf("builder.vg=%s builder.rootmb=%d builder.swapmb=%d builder.luks=%s", vg, rootMB+32, lvSwapMB, luksUUID)
	}
	irPath := filepath.Join(work, "builder.cpio.gz")
	if err := os.WriteFile(irPath, ir.Bytes(), 0o644); err != nil {
		return err
	}
	vm, err := harness.Start(harness.VMConfig{Name: "server-builder", Kernel: k.Vmlinuz, Initrd: irPath, MemoryMB: 512,
		Append: args,
		Disks:  []harness.Disk{{Path: disk}, {Path: rootImg}}, LogDir: work, Timeout: 10 * time.Minute})
	if err != nil {
		return err
	}
	if _, _, err := vm.WaitFor(regexp.MustCompile(`BUILDER: (DONE|FAIL.*)`), 0, 10*time.Minute); err != nil {
		return fmt.Errorf("%w\n%s", err, vm.Tail(40))
	}
	if strings.Contains(vm.Console(), "BUILDER: FAIL") {
		return fmt.Errorf("builder VM failed:\n%s", vm.Tail(40))
	}
	vm.Wait(time.Minute)
	if luks {
		if err := keepVolumeKey(vm.Console(), out); err != nil {
			return err
		}
	}
	if suite == "trixie" && !luks {
		if err := plainLayout(work, root, filepath.Join(out, "plain"), release, swapUUID); err != nil {
			return err
		}
	}
	cmdline := fmt.Sprintf("root=%s ro resume=PARTUUID=%s", rootDev, swapUUID)
	for name, body := range map[string]string{"release": release, "cmdline": cmdline, "swap-partuuid": swapUUID, "done": time.Now().UTC().Format(time.RFC3339)} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := linkCurrent(out, current); err != nil {
		return err
	}
	logf("%s server guest %s (kernel %s) built in %s: %s", suite, key, release, time.Since(start).Round(time.Second), out)
	return nil
}

// keepVolumeKey writes what the builder's luksDump printed for the tests:
// luks-key, the volume key in hex, and luks-offset, the bytes from the
// LV's start to the encrypted data. The key decrypts the disk image; it
// is a test fixture, kept out of the server itself.
func keepVolumeKey(console, out string) error {
	console = strings.ReplaceAll(console, "\r", "")
	i, j := strings.Index(console, "BUILDER: LUKS dump\n"), strings.Index(console, "BUILDER: LUKS dump end")
	if i < 0 || j < i {
		return fmt.Errorf("the builder printed no LUKS dump")
	}
	var key strings.Builder
	var offset int64
	inKey := false
	pair := regexp.MustCompile(`^([0-9a-f]{2}\s*)+$`)
	for _, line := range strings.Split(console[i:j], "\n") {
		line = strings.TrimSpace(line)
		name, val, _ := strings.Cut(line, ":")
		switch {
		case name == "Payload offset":
			fmt.Sscanf(strings.TrimSpace(val), "%d", &offset)
			inKey = false
		case strings.HasSuffix(name, " dump") && pair.MatchString(strings.TrimSpace(val)):
			inKey = true
			key.WriteString(strings.Join(strings.Fields(val), ""))
		case inKey && pair.MatchString(line):
			key.WriteString(strings.Join(strings.Fields(line), ""))
		default:
			inKey = false
		}
	}
	if key.Len() != 128 || offset == 0 {
		return fmt.Errorf("no 512-bit volume key and payload offset in the builder's LUKS dump:\n%s", console[i:j])
	}
	for name, body := range map[string]string{"luks-key": key.String(), "luks-offset": strconv.FormatInt(offset*512, 10)} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// linkCurrent points current (and, for trixie, current-plain) at the
// build in out.
func linkCurrent(out, current string) error {
	key := filepath.Base(out)
	os.Remove(current)
	if err := os.Symlink(key, current); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(out, "plain", "done")); err == nil {
		os.Remove(current + "-plain")
		return os.Symlink(filepath.Join(key, "plain"), current+"-plain")
	}
	return nil
}

// plainLayout writes the same server with root and swap on plain
// partitions, as a Debian installer's guided "all files in one partition"
// leaves it: partition 1 is the root filesystem (fstab and root= by
// filesystem UUID), partition 2 the swap in use (fstab UUID=), also the
// resume device. Such a server cannot move to another disk controller
// until thaw prepare has put root and swap behind device-mapper.
func plainLayout(work, root, out, release, swapUUID string) error {
	logf("plain layout: root on partition 1, swap on partition 2")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	rootUUID, swapFS := uuid4(), uuid4()
	fstab := fmt.Sprintf("UUID=%s / ext4 errors=remount-ro 0 1\nUUID=%s none swap sw 0 0\n", rootUUID, swapFS)
	if err := os.WriteFile(filepath.Join(root, "etc", "fstab"), []byte(fstab), 0o644); err != nil {
		return err
	}
	img := filepath.Join(work, "plain-root.ext4")
	if err := run("mke2fs", "-q", "-t", "ext4", "-L", "root", "-U", rootUUID, "-d", root, img, fmt.Sprintf("%dM", lvmMB)); err != nil {
		return err
	}
	disk := filepath.Join(out, "disk.img")
	if err := harness.MakeGPTDisk(disk, diskMB, []harness.Part{
		{Name: "root", SizeMB: lvmMB},
		{Name: "swap", SizeMB: swapMB, Swap: true, GUID: swapUUID, SwapUUID: swapFS},
	}); err != nil {
		return err
	}
	// Partition 1 starts at 1 MiB.
	if err := run("dd", "if="+img, "of="+disk, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"); err != nil {
		return err
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := os.Link(filepath.Join(filepath.Dir(out), f), filepath.Join(out, f)); err != nil {
			return err
		}
	}
	cmdline := fmt.Sprintf("root=UUID=%s ro resume=PARTUUID=%s", rootUUID, swapUUID)
	for name, body := range map[string]string{"release": release, "cmdline": cmdline, "swap-partuuid": swapUUID, "done": time.Now().UTC().Format(time.RFC3339)} {
		if err := os.WriteFile(filepath.Join(out, name), []byte(body+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
