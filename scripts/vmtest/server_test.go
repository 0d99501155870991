//go:build vm

package vmtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

var workloadRE = regexp.MustCompile(`WORKLOAD: (START )?secret=([0-9a-f]+)(?: counter=(\d+))?\r?\n`)

// serverVM boots the server guest from disk (a copy of the cached one) with
// extra disks, its own kernel and initrd, and cmdline.
func serverVM(t *testing.T, s *harness.Server, name, cmdline string, disks ...string) *harness.VM {
	t.Helper()
	return serverVMWith(t, s, name, cmdline, disks...)
}

// serverVMWith boots the server guest with a virtio NIC on QEMU's user
// network (the host's loopback is 10.0.2.2) and the given disks.
func serverVMWith(t *testing.T, s *harness.Server, name, cmdline string, disks ...string) *harness.VM {
	t.Helper()
	return serverVMOn(t, s, name, cmdline, "", disks...)
}

// serverVMOn is serverVMWith on a firmware ("" for SeaBIOS).
func serverVMOn(t *testing.T, s *harness.Server, name, cmdline, firmware string, disks ...string) *harness.VM {
	t.Helper()
	return serverVMCPUs(t, s, name, cmdline, firmware, 0, disks...)
}

// serverVMCPUs is serverVMOn with room for maxCPUs (one online).
func serverVMCPUs(t *testing.T, s *harness.Server, name, cmdline, firmware string, maxCPUs int, disks ...string) *harness.VM {
	t.Helper()
	var d []harness.Disk
	for _, p := range disks {
		d = append(d, harness.Disk{Path: p})
	}
	vm, err := harness.Start(harness.VMConfig{Name: name, Kernel: s.Vmlinuz, Initrd: s.Initrd, Append: cmdline,
		MemoryMB: 512, MaxCPUs: maxCPUs, Disks: d, NIC: "virtio-net-pci", Control: true, LogDir: logDir, Timeout: 10 * time.Minute, Firmware: firmware})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm
}

// hibernatedServer is the real server guest after systemctl hibernate: a
// pristine copy of its disk (image on partition 2) and what it printed.
type hibernatedServer struct {
	s       *harness.Server
	disk    string // do not boot this one: copy it
	secret  string
	last    int
	klog    kernelLog
	console string
}

var (
	srvMu  sync.Mutex
	srvHib *hibernatedServer
)

// blankDisk is the second disk every server VM has, so that hardware stays
// identical between hibernation and resume.
func blankDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "resume.img")
	if err := harness.MakeGPTDisk(p, 1100, []harness.Part{{Name: "data", SizeMB: 16}, {Name: "resume", SizeMB: 1024, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// emptyDiskLike makes path an empty (sparse) disk the size of the file
// like: a blank target for a source's disk.
func emptyDiskLike(t *testing.T, path, like string) string {
	t.Helper()
	st, err := os.Stat(like)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", src, err, out)
	}
}

// serverHibernated boots the server guest once, lets its workload count
// and hibernates it with systemctl hibernate; tests share the result.
func serverHibernated(t *testing.T) *hibernatedServer {
	t.Helper()
	srvMu.Lock()
	defer srvMu.Unlock()
	if srvHib != nil {
		return srvHib
	}
	s, err := harness.LoadServer()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(os.TempDir(), "thaw-vmtest-server")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	disk := filepath.Join(dir, "hibernated.img")
	copyFile(t, s.Disk, disk)
	start := time.Now()
	vm := serverVM(t, s, "server-hibernate", s.Cmdline, disk, blankDisk(t, dir))
	defer failWithConsole(t, vm)
	m, _, err := vm.WaitFor(workloadRE, 0, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h := &hibernatedServer{s: s, disk: disk, secret: m[2]}
	t.Logf("server up, workload secret %s (%.0fs)", h.secret, time.Since(start).Seconds())
	if _, _, err := vm.WaitFor(regexp.MustCompile(`counter=3\r?\n`), 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if out, status, err := vm.Run("findmnt -n -o SOURCE /; swapon --show=NAME --noheadings", 2*time.Minute); err != nil || status != 0 || !strings.Contains(out, "vg0-root") {
		t.Fatalf("root on LVM and swap active? %v %d %q", err, status, out)
	}
	// Swap in use is the LV; partition 2 (the kernel's resume= device)
	// takes the image, at the highest priority.
	if out, status, err := vm.Run("swapon -p 100 /dev/disk/by-partuuid/"+s.SwapUUID+" && swapon --show=NAME,PRIO --noheadings", time.Minute); err != nil || status != 0 {
		t.Fatalf("swapon the resume partition: %v %d %s", err, status, out)
	}
	if _, status, err := vm.Run("(sleep 1; systemctl hibernate) >/dev/console 2>&1 &", time.Minute); err != nil || status != 0 {
		t.Fatalf("systemctl hibernate: %v %d", err, status)
	}
	if err := vm.Wait(4 * time.Minute); err != nil {
		t.Fatalf("hibernating server: %v", err)
	}
	h.console = vm.Console()
	h.klog = parseKernelLog(t, h.console)
	h.last = lastCounter(h.console, h.secret)
	t.Logf("hibernated at counter %d: %d pages copied, %d zero, saving %d (%.0fs)", h.last, h.klog.Copied, h.klog.Zero, h.klog.Saving, time.Since(start).Seconds())
	srvHib = h
	return h
}

// checkResumed waits for the workload of a resumed server and checks its
// state in RAM and on disk, then powers it off.
func checkResumed(t *testing.T, vm *harness.VM, h *hibernatedServer) {
	t.Helper()
	checkResumedUp(t, vm, h)
	vm.Run("systemctl poweroff", 10*time.Second)
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("poweroff after resume: %v", err)
	}
}

// checkResumedUp is checkResumed, leaving the server running.
func checkResumedUp(t *testing.T, vm *harness.VM, h *hibernatedServer) {
	t.Helper()
	start := time.Now()
	m, _, err := vm.WaitFor(workloadRE, 0, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "" || m[2] != h.secret {
		t.Fatalf("the server booted afresh (workload %q secret %s), it did not resume secret %s", m[1], m[2], h.secret)
	}
	n, _ := strconv.Atoi(m[3])
	if n <= h.last {
		t.Fatalf("counter %d after resume, %d before", n, h.last)
	}
	t.Logf("resumed: secret %s, counter %d → %d (%.0fs after boot)", h.secret, h.last, n, time.Since(start).Seconds())
	// The workload appends every second too: count lines rather than look
	// at the last one.
	out, status, err := vm.Run("grep -c 'secret="+h.secret+"' /var/lib/workload/ticks; echo after-resume >>/var/lib/workload/ticks && sync /var/lib/workload/ticks && grep -c '^after-resume$' /var/lib/workload/ticks; touch /new-file && sync && ls /new-file", 2*time.Minute)
	if err != nil || status != 0 {
		t.Fatalf("guest after resume: %v %d %s", err, status, out)
	}
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("guest after resume: %q", out)
	}
	ticks, _ := strconv.Atoi(f[0])
	appended, _ := strconv.Atoi(f[1])
	if ticks < h.last || appended != 1 || f[2] != "/new-file" {
		t.Fatalf("after resume: %d ticks of this secret (want ≥ %d), %d appended lines (want 1), %q", ticks, h.last, appended, f[2])
	}
}

// TestServerRewriteResume: the real Debian 13 server (root on LVM, swap
// partition, workload) hibernates with systemctl hibernate; thaw inspects
// the image its kernel wrote and rewrites it uncompressed into partition 2 of
// another disk; the server's own initramfs resumes from there: same secret,
// counter continuing, the ticks file on disk intact and appendable.
func TestServerRewriteResume(t *testing.T) {
	t.Parallel()
	h := serverHibernated(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "server.img")
	copyFile(t, h.disk, disk)
	resume := blankDisk(t, dir)
	r := inspect(t, disk+"#2")
	if r.Verdict != "resumable" || r.Kernel.Release != h.s.Release || r.Pages.Data != h.klog.Copied || r.Pages.Zero != h.klog.Zero || r.Pages.Saving != h.klog.Saving {
		t.Fatalf("inspect of the server's image: %+v; kernel %s logged %+v", r, h.s.Release, h.klog)
	}
	out, err := thaw(t, "rewrite", "--json", "--from", disk+"#2", "--to", resume+"#2", "--compress", "none")
	if err != nil {
		t.Fatal(err)
	}
	var rw struct {
		ResumeArgs []string `json:"resume_args"`
	}
	if err := json.Unmarshal(out, &rw); err != nil || len(rw.ResumeArgs) == 0 {
		t.Fatalf("rewrite result %s: %v", out, err)
	}
	cmdline := regexp.MustCompile(`resume=\S+`).ReplaceAllString(h.s.Cmdline, rw.ResumeArgs[0])
	vm := serverVM(t, h.s, "server-resume", cmdline, disk, resume)
	defer failWithConsole(t, vm)
	checkResumed(t, vm, h)
}

// lastCounter is the last counter the workload printed with secret.
func lastCounter(console, secret string) int {
	last := 0
	for _, m := range workloadRE.FindAllStringSubmatch(console, -1) {
		if m[2] == secret {
			if n, err := strconv.Atoi(m[3]); err == nil {
				last = n
			}
		}
	}
	return last
}
