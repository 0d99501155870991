package harness

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed guest-init.sh
var guestInit []byte

// BusyboxPath is where Debian's busybox-static installs its binary.
var BusyboxPath = "/bin/busybox"

// BusyboxGuest writes the fast format-test guest for kernel k into dir and
// returns the initramfs path: a static busybox, the block drivers k needs as
// modules, and guest-init.sh as /init. The guest is driven by kernel
// parameters (see guest-init.sh): guest.mode=hibernate|resume, guest.swap=,
// guest.resume=.
func BusyboxGuest(k *Kernel, dir string) (string, error) {
	r := NewInitramfs()
	if err := r.Busybox(BusyboxPath); err != nil {
		return "", err
	}
	if err := r.Modules(k, "virtio_pci", "virtio_blk", "lz4", "lz4_compress", "lz4_decompress"); err != nil {
		return "", err
	}
	r.File("init", guestInit, 0o755)
	out := filepath.Join(dir, "busybox-guest-"+k.Name+".cpio.gz")
	if err := os.WriteFile(out, r.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	return out, nil
}
