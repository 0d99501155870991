package harness

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestInitramfsCpio: the archive is newc that GNU cpio lists and extracts
// with the right contents and modes.
func TestInitramfsCpio(t *testing.T) {
	r := NewInitramfs()
	r.File("init", []byte("#!/bin/sh\necho hi\n"), 0o755)
	r.File("lib/modules/kernel/a.ko", bytes.Repeat([]byte{1, 2, 3}, 1001), 0o644)
	r.Symlink("bin/sh", "busybox")
	zr, err := gzip.NewReader(bytes.NewReader(r.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	cmd := exec.Command("cpio", "-t", "-v", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t (install cpio): %v", err)
	}
	list := string(out)
	for _, want := range []string{"-rwxr-xr-x", " init", "lib/modules/kernel/a.ko", "bin/sh -> busybox", "drwxr-xr-x"} {
		if !strings.Contains(list, want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, list)
		}
	}
	if !strings.Contains(list, " 3003 ") {
		t.Errorf("a.ko size not 3003:\n%s", list)
	}
	dir := t.TempDir()
	cmd = exec.Command("cpio", "-i", "-d", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v %s", err, out)
	}
}
