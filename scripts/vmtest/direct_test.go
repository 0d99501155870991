//go:build vm

package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

const agentInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done </modules.order
arg() { for a in $(cat /proc/cmdline); do case $a in "$1"=*) echo "${a#*=}" ;; esac; done; }
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
echo "AGENT: restoring $(arg agent.image)"
/thaw restore --direct --image "$(arg agent.image)" --pubkey /k.pub --disk /dev/vda
echo "AGENT: FAIL restore returned $?"
poweroff -f
`

// TestServerDirectRestore: the direct path. A target with the source's
// hardware boots Debian 13's full kernel (the agent kernel, not the
// server's) with a small initramfs around thaw; thaw restore --direct
// fetches TestServerCapture's bundle from thaw serve, writes the disk and
// hands the memory image to the running kernel through /dev/snapshot: the
// server resumes with no resume area and no kernel of its own booted.
func TestServerDirectRestore(t *testing.T) {
	c := captured
	if c == nil {
		t.Fatal("needs the bundle of TestServerCapture (run both)")
	}
	k, err := harness.LoadKernel("debian13-full")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ir := harness.NewInitramfs()
	if err := ir.Busybox(harness.BusyboxPath); err != nil {
		t.Fatal(err)
	}
	ir.Symlink("bin/ip", "busybox")
	if err := ir.Modules(k, "virtio_pci", "virtio_blk", "virtio_net"); err != nil {
		t.Fatal(err)
	}
	if err := ir.HostFile("thaw", thawBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ir.HostFile("k.pub", c.pub, 0o644); err != nil {
		t.Fatal(err)
	}
	ir.File("init", []byte(agentInit), 0o755)
	initrd := filepath.Join(dir, "agent.cpio.gz")
	if err := os.WriteFile(initrd, ir.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	store := filepath.Join(dir, "store")
	os.MkdirAll(store, 0o755)
	if err := os.Link(c.bundle, filepath.Join(store, "server.thaw")); err != nil {
		copyFile(t, c.bundle, filepath.Join(store, "server.thaw"))
	}
	port := startServe(t, "direct", store)

	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, nil, 0o644)
	st, _ := os.Stat(c.s.Disk)
	os.Truncate(target, st.Size())
	start := time.Now()
	vm, err := harness.Start(harness.VMConfig{Name: "direct-agent", Kernel: k.Vmlinuz, Initrd: initrd,
		Append:   fmt.Sprintf("agent.image=http://10.0.2.2:%d/server.thaw", port),
		MemoryMB: 512, NIC: "virtio-net-pci", Control: true, LogDir: logDir, Timeout: 10 * time.Minute,
		Disks: []harness.Disk{{Path: target}, {Path: blankDisk(t, dir)}, {Path: c.tools}}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	defer failWithConsole(t, vm)
	if _, _, err := vm.WaitFor(regexp.MustCompile(`thaw capture \[[ 0-9.]+s\]: resumed: mailbox intact|AGENT: FAIL`), 0, 6*time.Minute); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(vm.Console(), "AGENT: FAIL") {
		t.Fatalf("the agent's restore failed")
	}
	t.Logf("TIMING %-34s %6.1fs", "agent boot + fetch + write + restore", time.Since(start).Seconds())
	out, status, err := vm.Run("md5sum </mnt/p/blob", 2*time.Minute)
	if err != nil || status != 0 || !strings.Contains(out, c.blobSum) {
		t.Fatalf("swapped-out blob after the direct restore: %q %v %d", out, err, status)
	}
	checkResumed(t, vm, c.h)
	fsckRoot(t, target)
}
