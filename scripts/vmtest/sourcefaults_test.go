//go:build vm

package vmtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thawlinux/thaw/scripts/harness"
)

// sourceFaults is T3: on a running source, a capture into a store whose
// disk fills up and one into a store that goes away (SIGKILL) once the
// upload has begun. Each must abort and thaw
// the source, which keeps running (its workload counts on, its redis
// answers); each store keeps its previous bundle byte for byte and no part
// of the broken upload. capArgs are the capture's flags but --to;
// tokenFile is the token the source holds, which the fault stores take
// as their write token.
func sourceFaults(t *testing.T, vm *harness.VM, h *hibernatedServer, name, capArgs, tokenFile string) {
	t.Helper()
	prev := make([]byte, 1<<20)
	rand.Read(prev)
	for _, fault := range []string{"full", "gone"} {
		start := time.Now()
		dir := filepath.Join(t.TempDir(), fault)
		os.MkdirAll(dir, 0o755)
		if fault == "full" {
			// A store disk that holds the previous bundle and the image
			// kernel's files, which go before the freeze, and 24 MiB
			// more: it fills up while the frozen machine streams its
			// memory.
			size := int64(len(prev)) + 24<<20
			for _, f := range []string{h.s.Vmlinuz, h.s.Initrd} {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				size += fi.Size()
			}
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
				t.Fatalf("mount a small tmpfs for the full store: %v", err)
			}
			t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		}
		if err := os.WriteFile(filepath.Join(dir, "server.thaw"), prev, 0o600); err != nil {
			t.Fatal(err)
		}
		port := freePort(t)
		srv := startServeAt(t, nil, "127.0.0.1", port, name+"-"+fault, dir, "--token-file", tokenFile)
		from := len(vm.Console())
		cmd := fmt.Sprintf("(/mnt/t/thaw capture --to http://10.0.2.2:%d/server.thaw%s >/dev/console 2>&1 &)", port, capArgs)
		t.Logf("server# %s (T3: the store %s)", cmd, map[string]string{"full": "fills up", "gone": "goes away"}[fault])
		if _, status, err := vm.Run(cmd, time.Minute); err != nil || status != 0 {
			t.Fatalf("start capture: %v %d", err, status)
		}
		if fault == "gone" {
			// Kill the store while the frozen machine streams its memory.
			if _, _, err := vm.WaitFor(regexp.MustCompile(`image created: .*streaming memory`), from, 5*time.Minute); err != nil {
				t.Fatalf("T3 gone: %v", err)
			}
			if !waitUpload(dir, 1<<20, time.Minute) {
				t.Fatal("T3: no upload arrived at the store")
			}
			srv.Process.Signal(syscall.SIGKILL)
			t.Logf("T3: thaw serve killed during the upload of the memory stream")
		}
		// A capture that fails before the freeze ends with its error
		// ("thaw capture: …"), not the abort: that is not this test.
		m, _, err := vm.WaitFor(regexp.MustCompile(`thaw capture \[[ 0-9.]+s\]: (aborted, machine thawed.*|.*powering off)|thaw capture: \S.*`), from, 5*time.Minute)
		if err != nil {
			t.Fatalf("T3 %s: %v", fault, err)
		}
		if !strings.Contains(m[0], "aborted, machine thawed") {
			t.Fatalf("T3 %s: the capture did not abort: %s", fault, m[0])
		}
		t.Logf("T3 %s: %s", fault, strings.TrimSpace(m[0]))
		// The source runs on: the workload counts past where it was, and
		// a command answers.
		if _, _, err := vm.WaitFor(regexp.MustCompile(`WORKLOAD: secret=`+h.secret+` counter=\d+`), len(vm.Console()), 2*time.Minute); err != nil {
			t.Fatalf("T3 %s: the workload does not run on after the abort: %v", fault, err)
		}
		if out, status, err := vm.Run("redis-cli ping", time.Minute); err != nil || status != 0 || !strings.Contains(out, "PONG") {
			t.Fatalf("T3 %s: the source is not running as before: %v %d %q", fault, err, status, out)
		}
		// The store: its previous bundle, and nothing of the broken one
		// (the store removes its temporary file; a killed store leaves it
		// to the next start's sweep, which must then remove it).
		if fault == "gone" {
			startServeAt(t, nil, "127.0.0.1", freePort(t), name+"-gone-again", dir, "--token-file", tokenFile)
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			left, _ := filepath.Glob(filepath.Join(dir, ".thaw-upload-*"))
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("T3 %s: the broken upload is left in the store: %v", fault, left)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "server.thaw")); err != nil || !bytes.Equal(b, prev) {
			t.Fatalf("T3 %s: the store's previous bundle changed (%v)", fault, err)
		}
		t.Logf("TIMING %-34s %6.1fs", "T3 "+fault+" (capture → thawed)", time.Since(start).Seconds())
	}
}

// waitUpload waits until an upload in progress in dir holds n bytes: a
// pack's chunks (stored as they arrive) and its temporary files.
func waitUpload(dir string, n int64, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var got int64
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && (strings.HasPrefix(d.Name(), ".thaw-upload-") || strings.Contains(p, "/chunks/")) {
				if fi, err := d.Info(); err == nil {
					got += fi.Size()
				}
			}
			return nil
		})
		if got >= n {
			return true
		}
	}
	return false
}
