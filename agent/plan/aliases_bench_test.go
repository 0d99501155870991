package plan

import (
	"os"
	"path"
	"path/filepath"
	"testing"
)

// BenchmarkMatchAll matches the modaliases of a QEMU machine against the
// Debian 13 kernel's whole alias table (make kernels), as the agent's
// coldplug does for every device, beside the same scan without the
// literal-start check ("baseline"): compare the two in one run.
func BenchmarkMatchAll(b *testing.B) {
	dir := filepath.Join("..", "..", "build", "cache", "kernels", "debian13-full", "modules")
	if _, err := os.Stat(filepath.Join(dir, "modules.alias")); err != nil {
		b.Skipf("no kernel modules tree (make kernels): %v", err)
	}
	a, err := FromDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	devices := []string{
		"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
		"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
		"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
		"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
		"virtio:d00000002v00001AF4",
		"scsi:t-0x05",
	}
	b.Run("literal-start", func(b *testing.B) {
		for b.Loop() {
			for _, d := range devices {
				a.MatchAll(d)
			}
		}
	})
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			for _, d := range devices {
				seen := map[string]bool{}
				for _, e := range a.entries {
					if ok, _ := path.Match(e.pattern, d); ok && !seen[e.module] {
						seen[e.module] = true
					}
				}
			}
		}
	})
}
