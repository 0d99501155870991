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
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

var workloadRE = regexp.MustCompile(`WORKLOAD: (START )?secret=([0-9a-f]+)(?: counter=(\d+))?\r?\n`)

// serverVM boots the server guest from disk (a copy of the cached one) with
// extra disks, its own kernel and initrd, and cmdline.
func serverVM(t *testing.T, s *harness.Server, name, cmdline string, disks ...string) *harness.VM {
	t.Helper()
	var d []harness.Disk
	for _, p := range disks {
		d = append(d, harness.Disk{Path: p})
	}
	vm, err := harness.Start(harness.VMConfig{Name: name, Kernel: s.Vmlinuz, Initrd: s.Initrd, Append: cmdline,
		MemoryMB: 512, Disks: d, Control: true, LogDir: logDir, Timeout: 8 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm
}

// TestServerRewriteResume: the real Debian 13 server (root on LVM, swap
// partition, workload) hibernates with systemctl hibernate; thaw inspects
// the image its kernel wrote and rewrites it uncompressed into partition 2 of
// another disk; the server's own initramfs resumes from there: same secret,
// counter continuing, the ticks file on disk intact and appendable.
func TestServerRewriteResume(t *testing.T) {
	s, err := harness.LoadServer()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "server.img")
	if out, err := exec.Command("cp", "--sparse=always", s.Disk, disk).CombinedOutput(); err != nil {
		t.Fatalf("copy server disk: %v %s", err, out)
	}
	resume := filepath.Join(dir, "resume.img")
	if err := harness.MakeGPTDisk(resume, 1100, []harness.Part{{Name: "data", SizeMB: 16}, {Name: "resume", SizeMB: 1024, Swap: true}}); err != nil {
		t.Fatal(err)
	}

	// 1. Boot, let the workload count, hibernate.
	start := time.Now()
	vm := serverVM(t, s, "server-hibernate", s.Cmdline, disk, resume)
	m, _, err := vm.WaitFor(workloadRE, 0, 4*time.Minute)
	if err != nil {
		failWithConsole(t, vm)
		t.Fatal(err)
	}
	secret := m[2]
	t.Logf("server up, workload secret %s (%.0fs)", secret, time.Since(start).Seconds())
	if _, _, err := vm.WaitFor(regexp.MustCompile(`counter=3\r?\n`), 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if out, status, err := vm.Run("swapon --show --noheadings; findmnt -n -o SOURCE /", 2*time.Minute); err != nil || status != 0 {
		t.Fatalf("guest: %v %d %s", err, status, out)
	} else if !strings.Contains(out, "vg0-root") {
		t.Fatalf("root is not on LVM: %s", out)
	} else {
		t.Logf("swap and root: %s", out)
	}
	if _, status, err := vm.Run("(sleep 1; systemctl hibernate) >/dev/console 2>&1 &", time.Minute); err != nil || status != 0 {
		t.Fatalf("systemctl hibernate: %v %d", err, status)
	}
	if err := vm.Wait(4 * time.Minute); err != nil {
		failWithConsole(t, vm)
		t.Fatalf("hibernating server: %v", err)
	}
	hib := vm.Console()
	klog := parseKernelLog(t, hib)
	last := lastCounter(hib, secret)
	t.Logf("hibernated at counter %d: %d pages copied, %d zero, saving %d (%.0fs)", last, klog.Copied, klog.Zero, klog.Saving, time.Since(start).Seconds())

	// 2. thaw inspect the kernel's image, rewrite it elsewhere.
	r := inspect(t, disk+"#2")
	if r.Verdict != "resumable" || r.Kernel.Release != s.Release || r.Pages.Data != klog.Copied || r.Pages.Zero != klog.Zero || r.Pages.Saving != klog.Saving {
		t.Fatalf("inspect of the server's image: %+v; kernel %s logged %+v", r, s.Release, klog)
	}
	if r.Flags&1 == 0 {
		t.Logf("note: image without SF_PLATFORM_MODE (flags %#x)", r.Flags)
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
	cmdline := regexp.MustCompile(`resume=\S+`).ReplaceAllString(s.Cmdline, rw.ResumeArgs[0])

	// 3. Resume from the rewritten image through the server's own initramfs.
	start = time.Now()
	vm2 := serverVM(t, s, "server-resume", cmdline, disk, resume)
	defer failWithConsole(t, vm2)
	m, _, err = vm2.WaitFor(workloadRE, 0, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "" || m[2] != secret {
		t.Fatalf("the server booted afresh (workload %q secret %s), it did not resume secret %s", m[1], m[2], secret)
	}
	n, _ := strconv.Atoi(m[3])
	if n <= last {
		t.Fatalf("counter %d after resume, %d before", n, last)
	}
	t.Logf("resumed: secret %s, counter %d → %d (%.0fs after boot)", secret, last, n, time.Since(start).Seconds())
	out2, status, err := vm2.Run("grep -c 'secret="+secret+"' /var/lib/workload/ticks; echo after-resume >>/var/lib/workload/ticks && sync /var/lib/workload/ticks && tail -n1 /var/lib/workload/ticks; touch /new-file && sync && ls /new-file", 2*time.Minute)
	if err != nil || status != 0 {
		t.Fatalf("guest after resume: %v %d %s", err, status, out2)
	}
	lines := strings.Fields(out2)
	if c, _ := strconv.Atoi(lines[0]); c < last || !strings.Contains(out2, "after-resume") || !strings.Contains(out2, "/new-file") {
		t.Fatalf("ticks file after resume: %q (want ≥ %d ticks of this secret, appendable)", out2, last)
	}
	vm2.Run("systemctl poweroff", 10*time.Second)
	if err := vm2.Wait(2 * time.Minute); err != nil {
		t.Fatalf("poweroff after resume: %v", err)
	}
	_ = os.Remove(disk)
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
