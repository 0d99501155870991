package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"

	"github.com/thawlinux/thaw/boot/initramfs"
)

// Initramfs is a guest's initramfs: boot/initramfs's archive with a static
// busybox and kernel modules laid out as guest-init.sh loads them.
type Initramfs struct{ *initramfs.Archive }

// NewInitramfs returns an empty archive with the usual top-level directories.
func NewInitramfs() *Initramfs { return &Initramfs{initramfs.New()} }

// Busybox adds a static busybox and a link for each of its applets.
func (r *Initramfs) Busybox(hostPath string) error {
	if err := r.HostFile("bin/busybox", hostPath, 0o755); err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	for _, a := range []string{"sh", "mount", "umount", "insmod", "mkswap", "swapon", "swapoff", "cat", "echo",
		"sleep", "poweroff", "reboot", "dd", "hexdump", "od", "head", "tr", "grep", "sed", "ls", "mkdir", "sync",
		"blkid", "free", "awk", "date", "mdev", "readlink", "basename", "xargs", "cut", "seq", "md5sum", "sha256sum", "ln", "tail", "dmesg", "uname"} {
		r.Symlink("bin/"+a, "busybox")
	}
	return nil
}

// Modules adds the named modules of k and everything they depend on, in
// load order, decompressed, and writes that order to /modules.order (one
// path relative to /lib/modules per line). A module built into k is skipped.
func (r *Initramfs) Modules(k *Kernel, names ...string) error {
	deps, err := readModulesDep(k.Modules)
	if err != nil {
		return err
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(k.Modules, "modules.builtin")); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			builtin[modName(s.Text())] = true
		}
		f.Close()
	}
	byName := map[string]string{}
	for p := range deps {
		byName[modName(p)] = p
	}
	var order []string
	seen := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, d := range deps[p] {
			visit(d)
		}
		order = append(order, p)
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		p, ok := byName[n]
		if !ok {
			if builtin[n] {
				continue
			}
			return fmt.Errorf("initramfs: kernel %s has no module %s", k.Release, n)
		}
		visit(p)
	}
	var list bytes.Buffer
	for _, p := range order {
		data, err := os.ReadFile(filepath.Join(k.Modules, p))
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if strings.HasSuffix(p, ".xz") {
			zr, err := xz.NewReader(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("initramfs: %s: %w", p, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				return fmt.Errorf("initramfs: %s: %w", p, err)
			}
			p = strings.TrimSuffix(p, ".xz")
		}
		r.File("lib/modules/"+p, data, 0o644)
		list.WriteString(p + "\n")
	}
	r.File("modules.order", list.Bytes(), 0o644)
	return nil
}

func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func readModulesDep(dir string) (map[string][]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		mod, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, s.Err()
}
