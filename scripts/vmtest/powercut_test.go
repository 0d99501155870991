//go:build vm

package vmtest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

// bootsIntoResume boots the target disk with the image kernel and its own
// initramfs and reports whether the kernel began to resume an image (it
// found the hibernation signature: "resume from hibernation"). It stops
// the machine at the first sign either way.
func bootsIntoResume(t *testing.T, c *capturedServer, name, cmdline, disk string) bool {
	t.Helper()
	vm := serverVMWith(t, c.s, name, cmdline, disk)
	defer vm.Kill()
	// (A kernel message can come between "local-premount ..." and its
	// "done".)
	verdict := regexp.MustCompile(`PM: hibernation: resume from hibernation|local-premount \.\.\. (?:\[[^\n]*\n)?done|Gave up waiting|ALERT!|Will now check root|Kernel panic`)
	m, _, err := vm.WaitFor(verdict, 0, 3*time.Minute)
	con := vm.Console()
	switch {
	case err == nil:
		resumed := strings.HasPrefix(m[0], "PM:")
		t.Logf("%s: %s", name, m[0])
		return resumed
	case strings.Contains(con, "resume from hibernation"):
		return true
	}
	t.Fatalf("%s: no verdict from the image kernel: %v\n%s", name, err, tail(con, 3000))
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestAgentPowerCuts is T2, and E3 on the kexec path. The target is E3's:
// another memory map, so stage 1 writes the disk and the resume image
// (into the server's own swap), and stage 2, the agent booted again with
// the source's memory map, writes the firmware ranges and the resume
// signature before the image kernel takes over. The target is killed
// (QEMU SIGKILL; its disk keeps what reached it) at ten points across the
// disk write, the resume-image write and the stage-2 handover, each run
// going on from the disk the cut before left. After each cut the disk is
// booted with the image kernel and its own initramfs: it must never
// resume. Then the agent runs to its end over what the cuts left, and E3's
// checks follow: ACPI intact, the server resumed with its memory, its root
// clean. (A cut restore over a complete one is TestOwnSwap's.)
func TestAgentPowerCuts(t *testing.T) {
	agentCaseParallel(t)
	c := needCaptured(t)
	m := openBundleFile(t, c.bundle).Manifest
	if m.Resume == nil || m.Resume.Device == "" {
		t.Fatalf("the capture reserved no room in its own swap: %+v", m.Resume)
	}
	cmdline := regexp.MustCompile(`resume=\S+`).ReplaceAllString(c.s.Cmdline, "resume="+m.Resume.Device) + " rootdelay=5"
	target := emptyDiskLike(t, filepath.Join(t.TempDir(), "target.img"), c.s.Disk)
	// Every chunk is checked as it is written (the target holds data
	// after the first cut, and verify-first is tested elsewhere).
	ac := otherMachine("e3-kexec", "thaw.resume=kexec thaw.verify=stream")
	ac.c = c
	ac.disk = target
	line := func(re string) func(*harness.VM) error {
		return func(vm *harness.VM) error {
			_, _, err := vm.WaitFor(regexp.MustCompile(re), 0, 6*time.Minute)
			return err
		}
	}
	after := func(re string, d time.Duration) func(*harness.VM) error {
		return func(vm *harness.VM) error {
			err := line(re)(vm)
			time.Sleep(d)
			return err
		}
	}
	// inStage2 waits for re in what stage 2 printed.
	inStage2 := func(re string) func(*harness.VM) error {
		return func(vm *harness.VM) error {
			_, at, err := vm.WaitFor(regexp.MustCompile(`rebooting into stage 2`), 0, 6*time.Minute)
			if err == nil {
				_, _, err = vm.WaitFor(regexp.MustCompile(re), at, 3*time.Minute)
			}
			return err
		}
	}
	cuts := []struct {
		phase string
		wait  func(*harness.VM) error
	}{
		{"disk write, 3% (no volume group yet)", progressAt(3)},
		{"disk write, 90%", progressAt(90)},
		{"disk write, every chunk written, before the sync", line(`disk0 → /dev/vda: `)},
		{"resume-image write, 2 s in", after(`\[\.\.\.\.\] area`, 2*time.Second)},
		{"resume-image write, 10 s in", after(`\[\.\.\.\.\] area`, 10*time.Second)},
		{"resume image verified, its signature held back", line(`\[ ok \] area .*held back`)},
		{"stage 2 initramfs packed", line(`stage 2 initramfs: `)},
		{"stage 2 kernel booting", inStage2(`Linux version`)},
		{"stage 2 loading its drivers", inStage2(`\[\.\.\.\.\] drivers`)},
		{"stage 2 has read stage 1's state", inStage2(`\[ ok \] stage2 `)},
	}
	falseResumes := 0
	for i, cut := range cuts {
		at := bootAgent(t, c, ac)
		if err := cut.wait(at.vm); err != nil {
			t.Fatalf("T2 cut %d (%s): %v\n%s", i+1, cut.phase, err, at.vm.Tail(30))
		}
		at.vm.Kill()
		if resumedRE.MatchString(at.vm.Console()) {
			t.Fatalf("T2 cut %d (%s): the server had resumed before the cut", i+1, cut.phase)
		}
		t.Logf("T2 cut %d: killed the agent VM at %s", i+1, cut.phase)
		if bootsIntoResume(t, c, fmt.Sprintf("e3-kexec-cut%02d", i+1), cmdline, target) {
			falseResumes++
			t.Errorf("T2 cut %d (%s): the image kernel resumed a restore that stage 2 had not finished", i+1, cut.phase)
		}
	}
	// The agent runs again, to its end, and the server resumes there.
	at := agentResume(t, ac)
	if !strings.Contains(at.vm.Console(), "[ ok ] arm ") {
		t.Error("stage 2 did not write the resume signature")
	}
	t.Logf("T2: %d cuts of the agent VM, %d false resumes; the agent then completed", len(cuts), falseResumes)
	checkOtherMachine(t, at, ac)
}

// progressAt waits for the write stage's progress line to reach pct.
func progressAt(pct int) func(*harness.VM) error {
	re := regexp.MustCompile(`\] +(\d+)% \d+/\d+ MiB`)
	return func(vm *harness.VM) error {
		from := 0
		for {
			m, end, err := vm.WaitFor(re, from, 6*time.Minute)
			if err != nil {
				return err
			}
			if n, _ := strconv.Atoi(m[1]); n >= pct {
				return nil
			}
			from = end
		}
	}
}
