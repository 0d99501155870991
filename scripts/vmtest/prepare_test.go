//go:build vm

package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/scripts/harness"
)

// E9, before thaw prepare: the server with root and swap on plain
// partitions, captured as it is, cannot move to E6's machine (its disk on
// another controller). The agent refuses before any write, naming thaw
// prepare, and the disks hash the same before and after.
func TestAgentPlainRootRefused(t *testing.T) {
	agentCaseParallel(t)
	c := needCapturedSuite(t, "plain")
	refusal(t, agentCase{name: "e9-plain-refused", vmware: true, redis: freePort(t), c: c},
		regexp.MustCompile(`DISK: source disk vda moves from virtio_blk .* / is mounted from the partition /dev/vda1; the swap /dev/vda2 is a partition.* fix: run .thaw prepare. on the source`))
}

// E13, the redirection: the same server, captured as it is (no thaw
// prepare), moves to E6's machine (with twice the RAM, half of it above
// 4 GiB, and 2 CPUs where the source ran one with QEMU's room for two)
// with a driver pack of its kernel that holds only thaw's own modules. Right after the resume, before kernel
// threads thaw, the pack's thaw_redirect makes the stale vda bio-based
// and holds its bios; once the pvscsi disk with vda's GPT GUID is found,
// they go there, and so does every later one. Root and swap stay on
// /dev/vda1 and /dev/vda2 as the kernel names them; the bytes land on the
// new disk, as fsck and the file written after the resume show.
func TestAgentPlainRootRedirected(t *testing.T) {
	agentCaseParallel(t)
	c := needCapturedSuite(t, "plain")
	pack := needPackWith(t, c, "")
	ac := agentCase{name: "e13-plain-redirect", vmware: true, c: c, packs: pack, memMB: 1024, cpus: 2,
		extra: []string{"-machine", "max-ram-below-4g=512M"}}
	at := testMoved(t, ac, func(at *agentTarget) {
		out, status, err := at.vm.Run("cd /sys/module/thaw_redirect/parameters && echo to=$(cat to) held=$(cat held) sent=$(cat sent); findmnt -n -o SOURCE /; swapon --show=NAME,USED --noheadings; cat /proc/sys/kernel/tainted; grep MemTotal /proc/meminfo; echo cpus=$(nproc)", time.Minute)
		t.Logf("resumed server: thaw_redirect, root, swap, taint:\n%s", out)
		if err != nil || status != 0 {
			t.Fatalf("on the resumed server: %v, exit %d", err, status)
		}
		m := regexp.MustCompile(`to=254:0=8:0 held=(\d+) sent=(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("thaw_redirect does not send vda (254:0) to sda (8:0): %q", out)
		}
		if sent, _ := strconv.Atoi(m[2]); sent == 0 {
			t.Errorf("thaw_redirect sent no bio to the new disk")
		}
		if !strings.Contains(out, "/dev/vda1") || !strings.Contains(out, "/dev/vda2") {
			t.Errorf("root and swap are not on vda1 and vda2 as before: %q", out)
		}
		// The whole machine on 6.12 too: its RAM above 4 GiB and its
		// second CPU, through the same pack's thaw_hotadd.
		var memKB int
		if m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindStringSubmatch(out); m != nil {
			memKB, _ = strconv.Atoi(m[1])
		}
		t.Logf("MemTotal %d MiB (%.0f%% of this machine's %d MiB)", memKB>>10, 100*float64(memKB>>10)/float64(ac.memMB), ac.memMB)
		if memKB>>10 < ac.memMB*9/10 {
			t.Errorf("MemTotal %d MiB is less than 90%% of this machine's %d MiB", memKB>>10, ac.memMB)
		}
		// 6.12 counts QEMU's disabled MADT entries as possible CPUs only
		// under a hypervisor it recognises, and TCG is none: the source
		// booted with 1 possible CPU, and the plan says so.
		if !strings.Contains(out, "cpus=1") {
			t.Errorf("the resumed server does not run the 1 CPU the plan gave it: %q", out)
		}
	}, "pack "+filepath.Base(pack), "hold the bios of vda (254:0)", "send the bios of vda (254:0) to sda (8:0): thaw_redirect",
		"load module thaw_hotadd", "online 4 memory block(s) of 128 MiB", "resumes with 1 of this machine's 2 CPUs: the image kernel's possible CPUs (1)", "not QEMU's TCG")
	// checkResumed wrote /new-file after the resume; the new disk holds it.
	rootHas(t, at.target, "/new-file")
}

// E9, after thaw prepare: the same server runs thaw prepare (checked
// first, and idempotent), boots again with the initramfs it rebuilt (read
// back from its /boot, as a boot loader would), is now movable, is
// captured, and moves to E6's machine as the LVM server does.
func TestAgentPlainRootPrepared(t *testing.T) {
	agentCaseParallel(t)
	s, err := harness.LoadServerSuite("plain")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk, scratch, tools := dir+"/server.img", blankDisk(t, dir), dir+"/tools.img"
	copyFile(t, s.Disk, disk)
	toolsDisk(t, tools, map[string]string{"thaw": thawBin})
	vm := serverVMWith(t, s, "e9-prepare", s.Cmdline, disk, scratch, tools)
	defer failWithConsole(t, vm)
	if _, _, err := vm.WaitFor(redisRE, 0, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string, want int) string {
		t.Helper()
		out, status, err := vm.Run(cmd, 5*time.Minute)
		t.Logf("server# %s (exit %d)\n%s", cmd, status, out)
		if err != nil || status != want {
			t.Fatalf("%s: %v, exit %d, want %d", cmd, err, status, want)
		}
		return out
	}
	run("mkdir -p /root/t && tar -x -f /dev/vdc -C /root/t thaw", 0)
	out := run("/root/t/thaw prepare --check", 1)
	if !strings.Contains(out, "/ is mounted from the partition /dev/vda1") {
		t.Errorf("--check does not name the root partition")
	}
	start := time.Now()
	out = run("/root/t/thaw prepare 2>&1", 0)
	t.Logf("TIMING %-34s %6.1fs", "thaw prepare (update-initramfs)", time.Since(start).Seconds())
	if !strings.Contains(out, "thaw-root") || !strings.Contains(out, "thaw-swap0") {
		t.Errorf("thaw prepare does not list thaw-root and thaw-swap0")
	}
	if out := run("/root/t/thaw prepare 2>&1", 0); !strings.Contains(out, "nothing changed") {
		t.Errorf("a second thaw prepare changed something")
	}
	run("/root/t/thaw prepare --check", 1) // takes effect at the next boot
	// The boot loader's part: the harness boots the server's kernel and
	// initrd itself, so the new initrd is read back from /boot.
	out = run(`f=/boot/initrd.img-$(uname -r); dd if=$f of=/dev/vdb bs=1M conv=fsync status=none && stat -c %s $f`, 0)
	size, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("initrd size %q", out)
	}
	vm.Run("systemctl poweroff", 10*time.Second)
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("poweroff: %v", err)
	}
	b, err := os.ReadFile(scratch)
	if err != nil || int64(len(b)) < size {
		t.Fatal(err)
	}
	prepared := *s
	prepared.Disk, prepared.Initrd = disk, dir+"/initrd.img"
	if err := os.WriteFile(prepared.Initrd, b[:size], 0o644); err != nil {
		t.Fatal(err)
	}
	b = nil

	// Booted again: root and swap on thaw-root and thaw-swap0.
	c, _, _, _ := captureServerWith(t, &prepared, "e9-prepared", func(vm *harness.VM) {
		out, status, err := vm.Run("mkdir -p /root/t && tar -x -f /dev/vdc -C /root/t thaw && /root/t/thaw prepare --check; echo; findmnt -n -o SOURCE /; swapon --show=NAME --noheadings; ls -l /dev/disk/by-uuid/", 2*time.Minute)
		t.Logf("server# thaw prepare --check (exit %d)\n%s", status, out)
		if err != nil || !strings.Contains(out, "movable: yes") || !strings.Contains(out, "thaw-root, thaw-swap0") {
			t.Fatalf("after thaw prepare and a reboot the server is not movable: %v", err)
		}
	})
	// (A check inside the moved server that reads the tools disk, /dev/vdc,
	// hung there: see the note of this change. The move itself is checked
	// as for E6.)
	testMoved(t, agentCase{name: "e9-plain-vmware", vmware: true, c: c}, nil, "vmw_pvscsi", "thaw-root")
}

// rootHas checks that the root filesystem on disk's first partition (a
// plain one) holds file.
func rootHas(t *testing.T, disk, file string) {
	t.Helper()
	loop := partLoop(t, disk, true)
	defer exec.Command("losetup", "-d", loop).Run()
	st, err := exec.Command("debugfs", "-R", "stat "+file, loop).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "Inode:") {
		t.Fatalf("the root filesystem on %s has no %s: %v\n%s", disk, file, err, st)
	}
	t.Logf("the root filesystem on %s holds %s", disk, file)
}

// redirectScript runs thaw_redirect on a live kernel, with a disk that is
// not the root: vdc's filesystem is frozen, copied to the SCSI disk sda
// (the same bytes, as after a move), vdc's bios are held, the filesystem
// thawed and a direct write to it started, which must wait, then vdc is
// sent to sda.
const redirectScript = `set -e
mkdir -p /mnt/d /mnt/e
mount /dev/vdc1 /mnt/d
echo before >/mnt/d/before
sync
fsfreeze -f /mnt/d
dd if=/dev/vdc of=/dev/sda bs=1M iflag=direct oflag=direct status=none
old=$(cat /sys/block/vdc/dev) new=$(cat /sys/block/sda/dev)
insmod /root/r/thaw_redirect.ko hold=$old
# ext4's thaw writes the superblock: it waits too.
fsfreeze -u /mnt/d &
sleep 1
p=/sys/module/thaw_redirect/parameters
(dd if=/dev/zero of=/mnt/d/held bs=64k count=16 oflag=direct status=none && echo written >/run/ddok) &
sleep 3
echo "while held: held=$(cat $p/held) write=$(cat /run/ddok 2>/dev/null || echo waiting)"
echo "$old=$new" >$p/to
wait
echo "sent: to=$(cat $p/to) sent=$(cat $p/sent) write=$(cat /run/ddok)"
echo redirected >/mnt/d/marker
sync
if mount -o ro /dev/sda1 /mnt/e 2>/dev/null; then echo "second mount: allowed"; else echo "second mount: refused"; fi
umount /mnt/d
echo "unmounted"
`

// E13 on a live kernel: what the resumed server's window between the
// resume and the new disk's discovery is too short to show (no bio came
// then). The plain server's own kernel loads the pack's thaw_redirect for
// a data disk: a write started while vdc is held waits, and completes once
// vdc is sent to the SCSI disk; nothing reaches vdc after the hold, the
// SCSI disk holds every later write, and while it is claimed it cannot be
// mounted beside the old one.
//
// It runs on Debian 13's kernel (6.12, the plain server, with E13's pack)
// and on Debian 12's (6.1, the LVM server, with E10's pack).
func TestRedirectHoldsLive(t *testing.T) {
	agentCaseParallel(t)
	for _, tc := range []struct{ suite, modules string }{{"plain", ""}, {"bookworm", packModules}} {
		t.Run(tc.suite, func(t *testing.T) {
			redirectLive(t, tc.suite, tc.modules)
		})
	}
}

func redirectLive(t *testing.T, suite, modules string) {
	c := needCapturedSuite(t, suite)
	pack := needPackWith(t, c, modules)
	s, err := harness.LoadServerSuite(suite)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ko := filepath.Join(dir, "thaw_redirect.ko")
	os.WriteFile(ko, packModule(t, c, pack, "thaw_redirect"), 0o644)
	script := filepath.Join(dir, "redirect.sh")
	os.WriteFile(script, []byte(redirectScript), 0o755)
	disk, tools, data, scsi := dir+"/server.img", dir+"/tools.img", dir+"/data.img", dir+"/scsi.img"
	copyFile(t, s.Disk, disk)
	toolsDisk(t, tools, map[string]string{"thaw_redirect.ko": ko, "redirect.sh": script})
	if err := harness.MakeGPTDisk(data, 64, []harness.Part{{Name: "data", SizeMB: 48}}); err != nil {
		t.Fatal(err)
	}
	loop := partLoop(t, data, false)
	if out, err := exec.Command("mkfs.ext4", "-q", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	exec.Command("losetup", "-d", loop).Run()
	if err := exec.Command("truncate", "-s", "64M", scsi).Run(); err != nil {
		t.Fatal(err)
	}
	vm, err := harness.Start(harness.VMConfig{Name: "e13-live-" + suite, Kernel: s.Vmlinuz, Initrd: s.Initrd, Append: s.Cmdline,
		MemoryMB: 512, Disks: []harness.Disk{{Path: disk}, {Path: tools}, {Path: data}}, NIC: "virtio-net-pci", Control: true, LogDir: logDir, Timeout: 10 * time.Minute,
		Extra: []string{"-device", "virtio-scsi-pci,id=rs", "-drive", "file=" + scsi + ",if=none,id=rsd,format=raw", "-device", "scsi-hd,drive=rsd"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	defer failWithConsole(t, vm)
	if _, _, err := vm.WaitFor(redisRE, 0, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	out, status, err := vm.Run("mkdir -p /root/r && tar -x -f /dev/vdb -C /root/r && sh /root/r/redirect.sh 2>&1", 3*time.Minute)
	t.Logf("server# redirect.sh (exit %d)\n%s", status, out)
	if err != nil || status != 0 {
		t.Fatalf("redirect.sh: %v, exit %d", err, status)
	}
	for _, re := range []string{`while held: held=[1-9]\d* write=waiting`, `sent: to=254:32=8:0 sent=[1-9]\d* write=written`, `second mount: refused`, `unmounted`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("redirect.sh does not say %s", re)
		}
	}
	vm.Run("systemctl poweroff", 10*time.Second)
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("poweroff: %v", err)
	}
	// The SCSI disk holds everything written after the hold; vdc holds
	// only what came before, and both filesystems are clean.
	for _, d := range []struct {
		img     string
		has     []string
		hasNot  []string
		checked string
	}{{scsi, []string{"/before", "/held", "/marker"}, nil, "the SCSI disk"}, {data, []string{"/before"}, []string{"/held", "/marker"}, "vdc"}} {
		loop := partLoop(t, d.img, true)
		fsck, err := exec.Command("e2fsck", "-f", "-n", loop).CombinedOutput()
		if err != nil {
			t.Errorf("e2fsck -fn of %s: %v\n%s", d.checked, err, fsck)
		}
		for _, f := range append(d.has, d.hasNot...) {
			st, _ := exec.Command("debugfs", "-R", "stat "+f, loop).CombinedOutput()
			if got, want := strings.Contains(string(st), "Inode:"), slices.Contains(d.has, f); got != want {
				t.Errorf("%s holds %s: %v, want %v", d.checked, f, got, want)
			}
		}
		exec.Command("losetup", "-d", loop).Run()
	}
}

// partLoop attaches the first partition of a disk image to a loop device.
func partLoop(t *testing.T, disk string, readOnly bool) string {
	t.Helper()
	d, err := probe.DescribeDisk(disk)
	if err != nil || len(d.Partitions) == 0 {
		t.Fatalf("the partitions of %s: %v", disk, err)
	}
	p := d.Partitions[0]
	args := []string{"--find", "--show", "--offset", strconv.FormatInt(p.Start, 10), "--sizelimit", strconv.FormatInt(p.Size, 10), disk}
	if readOnly {
		args = append([]string{"--read-only"}, args...)
	}
	out, err := exec.Command("losetup", args...).Output()
	if err != nil {
		t.Fatalf("losetup %s: %v", disk, err)
	}
	return strings.TrimSpace(string(out))
}
