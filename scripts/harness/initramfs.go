package harness

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ulikunitz/xz"
)

// Initramfs builds a newc cpio archive in memory.
type Initramfs struct {
	buf   bytes.Buffer
	ino   uint32
	dirs  map[string]bool
	files map[string]bool
}

// NewInitramfs returns an empty archive with the usual top-level directories.
func NewInitramfs() *Initramfs {
	r := &Initramfs{dirs: map[string]bool{}, files: map[string]bool{}}
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "run", "mnt", "etc", "lib/modules"} {
		r.Dir(d)
	}
	return r
}

func (r *Initramfs) header(name string, mode uint32, size int, nlink uint32) {
	r.ino++
	fmt.Fprintf(&r.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		r.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	r.buf.WriteString(name)
	r.buf.WriteByte(0)
	r.pad()
}

func (r *Initramfs) pad() {
	for r.buf.Len()%4 != 0 {
		r.buf.WriteByte(0)
	}
}

// Dir adds a directory and its parents.
func (r *Initramfs) Dir(name string) {
	name = strings.Trim(name, "/")
	if name == "" || name == "." || r.dirs[name] {
		return
	}
	r.Dir(path.Dir(name))
	r.dirs[name] = true
	r.header(name, 0o40755, 0, 2)
}

// File adds a regular file with the given contents and permissions.
func (r *Initramfs) File(name string, data []byte, perm uint32) {
	name = strings.Trim(name, "/")
	r.Dir(path.Dir(name))
	r.files[name] = true
	r.header(name, 0o100000|perm, len(data), 1)
	r.buf.Write(data)
	r.pad()
}

// Symlink adds a symbolic link name → target.
func (r *Initramfs) Symlink(name, target string) {
	name = strings.Trim(name, "/")
	r.Dir(path.Dir(name))
	r.header(name, 0o120777, len(target), 1)
	r.buf.WriteString(target)
	r.pad()
}

// HostFile copies a file of the host into the archive.
func (r *Initramfs) HostFile(name, hostPath string, perm uint32) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	r.File(name, data, perm)
	return nil
}

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

// Bytes returns the gzip-compressed archive with its trailer.
func (r *Initramfs) Bytes() []byte {
	r.header("TRAILER!!!", 0, 0, 1)
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(r.buf.Bytes())
	zw.Close()
	return out.Bytes()
}

// Names lists the regular files added so far (for tests of the builder).
func (r *Initramfs) Names() []string {
	var n []string
	for f := range r.files {
		n = append(n, f)
	}
	sort.Strings(n)
	return n
}

// Raw returns the uncompressed archive with its trailer (for tools that
// merge archives, such as u-root's -base). Nothing may be added after it.
func (r *Initramfs) Raw() []byte {
	r.header("TRAILER!!!", 0, 0, 1)
	return r.buf.Bytes()
}
