package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// TestCpio: the archive is newc that GNU cpio lists and extracts
// with the right contents and modes.
func TestCpio(t *testing.T) {
	r := New()
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

// Names lists the regular files only, once each, in order; the usual
// directories are there from the start.
func TestNames(t *testing.T) {
	tests := []struct {
		name string
		add  func(r *Archive)
		want []string
	}{
		{name: "empty", add: func(*Archive) {}, want: nil},
		{name: "a file with its parents", add: func(r *Archive) { r.File("/etc/thaw/agent-kernel", []byte("6.12\n"), 0o644) }, want: []string{"etc/thaw/agent-kernel"}},
		{name: "directories and links are no files", add: func(r *Archive) { r.Dir("a/b"); r.Symlink("bin/sh", "busybox") }, want: nil},
		{
			name: "sorted, a file added twice once",
			add: func(r *Archive) {
				r.File("init", nil, 0o755)
				r.File("bin/busybox", nil, 0o755)
				r.File("init", []byte("#!/bin/sh\n"), 0o755)
			},
			want: []string{"bin/busybox", "init"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			tt.add(r)
			if got := r.Names(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Names = %q, want %q", got, tt.want)
			}
			raw := r.Raw()
			if !bytes.HasPrefix(raw, []byte("070701")) || !bytes.Contains(raw, []byte("TRAILER!!!\x00")) || len(raw)%4 != 0 {
				t.Errorf("Raw: not a padded newc archive with its trailer (%d bytes)", len(raw))
			}
		})
	}
}
