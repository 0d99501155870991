//go:build vm

package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRestorePowerCuts is T2: thaw restore of the captured server is
// killed (SIGKILL, as a power cut takes the writer) at points across the
// disk write and the resume-image write, each run going on from the disks
// the cut before left. After each cut the target's disk is booted with the
// image kernel and its own initramfs: it must never resume. Then a
// restore runs to its end and the image kernel resumes the server. Last,
// a restore over that complete one is cut early: the old image must not
// resume over half-rewritten disks either.
func TestRestorePowerCuts(t *testing.T) {
	agentCaseParallel(t)
	c := needCaptured(t)
	dir := t.TempDir()
	newDisk := func(name string) string { return emptyDiskLike(t, filepath.Join(dir, name), c.s.Disk) }
	args := func(disk string) []string {
		return []string{"restore", "--image", c.bundle, "--pubkey", c.pub, "--identity", c.identity, "--disk", disk}
	}
	// A reference run on a scratch disk: how many bytes the disk phase
	// and the whole restore write.
	scratch := newDisk("scratch.img")
	ref := runCut(t, args(scratch), -1)
	if !ref.done || ref.areaAt <= 0 || ref.total <= ref.areaAt {
		t.Fatalf("reference restore: %+v", ref)
	}
	os.Remove(scratch)
	resumeArgs := regexp.MustCompile(`resume=\S+`).FindString(ref.out)
	if resumeArgs == "" {
		t.Fatalf("the reference restore named no resume=: %s", ref.out)
	}
	cmdline := regexp.MustCompile(`resume=\S+`).ReplaceAllString(c.s.Cmdline, resumeArgs) + " rootdelay=5"
	t.Logf("T2: the disk phase writes %d MiB, the resume image %d MiB; check boots use %s", ref.areaAt>>20, (ref.total-ref.areaAt)>>20, cmdline)

	// Six points in the disk write: two early, where the disk does not
	// hold the volume group yet (the image kernel's initramfs then waits
	// 30 s for the resume device), four late, where it does; four in the
	// resume-image write.
	var points []int64
	for _, per := range []int64{125, 500, 875, 920, 960, 995} {
		points = append(points, ref.areaAt*per/1000)
	}
	for k := int64(1); k <= 4; k++ {
		points = append(points, ref.areaAt+(ref.total-ref.areaAt)*k/5)
	}
	target := newDisk("target.img")
	falseResumes := 0
	check := func(i int, what string) {
		t.Helper()
		if resumed := bootsIntoResume(t, c, fmt.Sprintf("t2-cut%02d", i), cmdline, target); resumed {
			falseResumes++
			t.Errorf("T2 cut %d (%s): the image kernel resumed a half-written restore", i, what)
		}
	}
	for i, at := range points {
		r := runCut(t, args(target), at)
		if r.done {
			t.Fatalf("T2 cut %d: the restore ended before %d bytes were written", i+1, at)
		}
		phase := "disk write"
		if at >= ref.areaAt {
			phase = "resume-image write"
		}
		t.Logf("T2 cut %d: killed at %d MiB written (%s)", i+1, r.killedAt>>20, phase)
		check(i+1, phase)
	}
	// The restore runs again, to its end, and the server resumes.
	if r := runCut(t, args(target), -1); !r.done {
		t.Fatalf("T2: the restore after the cuts did not complete: %s", r.out)
	}
	if resumed := bootsIntoResume(t, c, "t2-complete", cmdline, target); !resumed {
		t.Fatal("T2: the complete restore does not resume")
	}
	// A restore over the complete one, cut early in its disk write.
	r := runCut(t, args(target), ref.areaAt/20)
	if r.done {
		t.Fatal("T2: the last restore ended before its cut")
	}
	check(len(points)+1, "disk write over a complete restore")
	t.Logf("T2: %d cuts, %d false resumes; the restore then completed and resumed", len(points)+1, falseResumes)
}

// cutRun is one thaw restore, killed or not.
type cutRun struct {
	done     bool   // exited 0
	out      string // its output
	areaAt   int64  // bytes written when the resume-image stage began
	total    int64  // bytes written in all (a run to the end)
	killedAt int64
}

// runCut runs thaw args and kills it with SIGKILL once it has written at
// least at bytes (/proc/PID/io wchar); at < 0 lets it finish.
func runCut(t *testing.T, args []string, at int64) cutRun {
	t.Helper()
	cmd := exec.Command(thawBin, args...)
	var stdout, out bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw, _ := os.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	wchar := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", cmd.Process.Pid))
		if err != nil {
			return -1
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "wchar: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return -1
	}
	var res cutRun
	var last atomic.Int64
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Text()
			out.WriteString(l + "\n")
			if strings.HasPrefix(l, "[....] area") && res.areaAt == 0 {
				res.areaAt = last.Load()
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			<-stderrDone
			res.done = err == nil
			res.out = out.String() + stdout.String()
			return res
		case <-tick.C:
			n := wchar()
			if n < 0 {
				continue
			}
			last.Store(n)
			res.total = n
			if at >= 0 && n >= at && res.killedAt == 0 {
				cmd.Process.Signal(syscall.SIGKILL)
				res.killedAt = n
			}
		}
	}
}

// bootsIntoResume boots the target disk with the image kernel and its own
// initramfs and reports whether the kernel began to resume an image (it
// found the hibernation signature: "resume from hibernation"). It stops
// the machine at the first sign either way.
func bootsIntoResume(t *testing.T, c *capturedServer, name, cmdline, disk string) bool {
	t.Helper()
	vm := serverVMWith(t, c.s, name, cmdline, disk)
	defer vm.Kill()
	verdict := regexp.MustCompile(`PM: hibernation: resume from hibernation|local-premount \.\.\. done|Gave up waiting|ALERT!|Will now check root|Kernel panic`)
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
