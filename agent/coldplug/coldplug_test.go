package coldplug

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A virtio PCI device brings a virtio device once virtio_pci is loaded;
// the second round must load virtio_blk for it. An unknown device stays
// unclaimed; a built-in driver loads nothing.
func TestRun(t *testing.T) {
	sys, mods := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mods, "modules.alias"), `# aliases
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
`)
	write(t, filepath.Join(mods, "modules.builtin.modinfo"), "nvme.alias=pci:v*d*sv*sd*bc01sc08i02*\x00nvme.license=GPL\x00")
	write(t, filepath.Join(sys, "bus/pci/devices/0000:00:03.0/modalias"), "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
	write(t, filepath.Join(sys, "bus/pci/devices/0000:00:04.0/modalias"), "pci:v00008086d0000100Esv00008086sd00000001bc02sc00i00\n")
	write(t, filepath.Join(sys, "bus/pci/devices/0000:00:05.0/modalias"), "pci:v00001234d00001111sv00000000sd00000000bc03sc00i00\n")
	write(t, filepath.Join(sys, "bus/pci/devices/0000:00:06.0/modalias"), "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02\n")
	var order []string
	load := func(m string) error {
		order = append(order, m)
		if m == "virtio_pci" {
			write(t, filepath.Join(sys, "bus/virtio/devices/virtio0/modalias"), "virtio:d00000002v00001AF4\n")
		}
		return nil
	}
	res, err := Run(Config{Sys: sys, Modules: mods, Load: load})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio_pci", "e1000", "virtio_blk"}; !reflect.DeepEqual(order, want) {
		t.Errorf("load order %v, want %v", order, want)
	}
	if !reflect.DeepEqual(res.Loaded, order) {
		t.Errorf("Loaded %v, want %v", res.Loaded, order)
	}
	un := res.Unclaimed()
	if len(un) != 1 || un[0].Path != "pci/devices/0000:00:05.0" {
		t.Errorf("unclaimed %+v, want only 0000:00:05.0", un)
	}
	for _, d := range res.Devices {
		if d.Path == "pci/devices/0000:00:06.0" && (!d.Builtin || len(d.Modules) != 0) {
			t.Errorf("nvme device: %+v, want built in, nothing loaded", d)
		}
	}
}

// A module that fails to load is no device's driver, however many
// devices want it, and is tried once.
func TestRunLoadFails(t *testing.T) {
	sys, mods := t.TempDir(), t.TempDir()
	write(t, filepath.Join(mods, "modules.alias"), "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n")
	for _, a := range []string{"0000:00:04.0", "0000:00:05.0"} {
		write(t, filepath.Join(sys, "bus/pci/devices", a, "modalias"), "pci:v00008086d0000100Esv00008086sd00000001bc02sc00i00\n")
	}
	n := 0
	res, err := Run(Config{Sys: sys, Modules: mods, Load: func(string) error { n++; return os.ErrNotExist }})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(res.Loaded) != 0 || len(res.Unclaimed()) != 2 {
		t.Fatalf("%d loads, loaded %v, unclaimed %+v", n, res.Loaded, res.Unclaimed())
	}
	for _, d := range res.Devices {
		if d.Err == "" {
			t.Errorf("%s: no error recorded", d.Path)
		}
	}
}

func TestRunNoAliases(t *testing.T) {
	if _, err := Run(Config{Sys: t.TempDir(), Modules: t.TempDir(), Load: func(string) error { return nil }}); err == nil {
		t.Fatal("no modules.alias: want an error")
	}
}
