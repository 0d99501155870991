package prepare

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUs(t *testing.T) {
	root := t.TempDir()
	var ran []string
	fail := false
	h := &Host{Root: root, Run: func(name string, args ...string) error {
		ran = append(ran, name)
		if fail {
			return errors.New("exit status 1")
		}
		return nil
	}}
	if _, err := CPUs(h, 4); err == nil || !strings.Contains(err.Error(), "add possible_cpus=4 to the kernel command line") {
		t.Errorf("without GRUB: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/sbin/update-grub"), nil, 0o755)
	msg, err := CPUs(h, 4)
	if err != nil || !strings.Contains(msg, "possible_cpus=4 added") {
		t.Fatalf("CPUs: %q %v", msg, err)
	}
	b, _ := os.ReadFile(filepath.Join(root, GrubCPUs))
	if !strings.Contains(string(b), `GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX possible_cpus=4"`) || len(ran) != 1 {
		t.Errorf("drop-in %q, ran %v", b, ran)
	}
	if msg, _ := CPUs(h, 4); !strings.Contains(msg, "already") || len(ran) != 1 {
		t.Errorf("again: %q, ran %v", msg, ran)
	}
	fail = true
	if _, err := CPUs(h, 8); err == nil {
		t.Error("update-grub failed, no error")
	}
	if b2, _ := os.ReadFile(filepath.Join(root, GrubCPUs)); string(b2) != "" {
		t.Errorf("a failed update-grub left %q", b2)
	}
	if _, err := CPUs(h, 0); err == nil {
		t.Error("--cpus 0 accepted")
	}
}
