package coldplug

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRelease(t *testing.T) {
	sys := t.TempDir()
	drv := filepath.Join(sys, "bus/pci/drivers/vmxnet3")
	dev := filepath.Join(sys, "bus/pci/devices/0000:00:0a.0")
	free := filepath.Join(sys, "bus/pci/devices/0000:00:0b.0")
	for _, d := range []string{drv, dev, free} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(drv, "unbind"), nil, 0o644)
	if err := os.Symlink(drv, filepath.Join(dev, "driver")); err != nil {
		t.Fatal(err)
	}
	name, err := Release(sys, "0000:00:0a.0")
	if err != nil || name != "vmxnet3" {
		t.Fatalf("Release = %q, %v; want vmxnet3", name, err)
	}
	if b, _ := os.ReadFile(filepath.Join(drv, "unbind")); string(b) != "0000:00:0a.0" {
		t.Errorf("unbind got %q, want the device's address", b)
	}
	if name, err := Release(sys, "0000:00:0b.0"); err != nil || name != "" {
		t.Errorf("Release of an unbound device = %q, %v; want nothing to do", name, err)
	}
	if _, err := Release(sys, "0000:00:0c.0"); err == nil || !strings.Contains(err.Error(), "0000:00:0c.0") {
		t.Errorf("Release of a missing device: %v, want an error naming it", err)
	}
}
