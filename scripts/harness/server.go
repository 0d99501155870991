package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Server is the cached real Debian 13 server guest built by
// scripts/buildserver: a GPT disk with the root filesystem on LVM (vg0/root
// on partition 1) and a swap partition (partition 2) configured as the
// resume device, its own kernel and initramfs-tools initrd, and two services:
// workload (secret and counter in RAM, printed to the console, ticks appended
// to /var/lib/workload/ticks) and testctl (a command channel on ttyS1).
type Server struct {
	Dir      string
	Disk     string // raw disk image; copy it before booting
	Vmlinuz  string
	Initrd   string
	Release  string
	Cmdline  string // root= and resume= for the server's own initramfs
	SwapUUID string // PARTUUID of the swap partition
}

// LoadServer returns the Debian 13 server guest that `make server` built.
func LoadServer() (*Server, error) { return LoadServerSuite("trixie") }

// LoadServerSuite returns the server guest of a Debian suite: trixie
// (Debian 13) or bookworm (Debian 12).
func LoadServerSuite(suite string) (*Server, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	link := "current"
	if suite != "trixie" {
		link += "-" + suite
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(cache, "server", link))
	if err != nil {
		return nil, fmt.Errorf("harness: no server guest in %s (run `make server`): %w", cache, err)
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b)), err
	}
	s := &Server{Dir: dir, Disk: filepath.Join(dir, "disk.img"), Vmlinuz: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
	if s.Release, err = read("release"); err != nil {
		return nil, fmt.Errorf("harness: server guest in %s is incomplete: %w", dir, err)
	}
	if s.Cmdline, err = read("cmdline"); err != nil {
		return nil, err
	}
	if suite == "bookworm" {
		// Under TCG, zeroing every page it allocates (init_on_alloc, on
		// in Debian's kernels) is the Debian 12 kernel's slow path when
		// hibernation preallocates the image: 2.4 MB/s, 73 s of the
		// frozen phase, against 1.3 s without. The test machines only;
		// Debian 13's kernel takes 0.6 s either way.
		s.Cmdline += " init_on_alloc=0"
	}
	if s.SwapUUID, err = read("swap-partuuid"); err != nil {
		return nil, err
	}
	return s, nil
}
