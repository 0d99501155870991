package usb

import "testing"

// Every size the stick may use gets a FAT that holds its clusters.
func TestFatSize(t *testing.T) {
	for mb := int64(33); mb < 4096; mb += 7 {
		s, ok := fatSize(mb << 20)
		if mb<<20 > 247*mib && mb<<20 < 272*mib {
			continue
		}
		if !ok {
			t.Fatalf("%d MiB: no layout", mb)
		}
		perFAT, clusters := fatLayout(s)
		if perFAT*128 < clusters+2 || s > mb<<20 || s < mb<<20-32<<10 {
			t.Fatalf("%d MiB: size %d, %d sectors per FAT for %d clusters", mb, s, perFAT, clusters)
		}
	}
	if _, ok := fatSize(300 << 30); ok {
		t.Error("300 GiB: the FAT would not fit go-diskfs's 16 bits")
	}
}
