package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is a newc cpio archive being built in memory.
type Archive struct {
	buf   bytes.Buffer
	ino   uint32
	dirs  map[string]bool
	files map[string]bool
}

// New returns an archive with the usual top-level directories (bin, sbin,
// dev, proc, sys, tmp, run, mnt, etc, lib/modules).
func New() *Archive {
	r := &Archive{dirs: map[string]bool{}, files: map[string]bool{}}
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "run", "mnt", "etc", "lib/modules"} {
		r.Dir(d)
	}
	return r
}

func (r *Archive) header(name string, mode uint32, size int, nlink uint32) {
	r.ino++
	fmt.Fprintf(&r.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		r.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	r.buf.WriteString(name)
	r.buf.WriteByte(0)
	r.pad()
}

func (r *Archive) pad() {
	for r.buf.Len()%4 != 0 {
		r.buf.WriteByte(0)
	}
}

// Dir adds a directory and its parents.
func (r *Archive) Dir(name string) {
	name = strings.Trim(name, "/")
	if name == "" || name == "." || r.dirs[name] {
		return
	}
	r.Dir(path.Dir(name))
	r.dirs[name] = true
	r.header(name, 0o40755, 0, 2)
}

// File adds a regular file with the given contents and permissions.
func (r *Archive) File(name string, data []byte, perm uint32) {
	name = strings.Trim(name, "/")
	r.Dir(path.Dir(name))
	r.files[name] = true
	r.header(name, 0o100000|perm, len(data), 1)
	r.buf.Write(data)
	r.pad()
}

// Symlink adds a symbolic link name → target.
func (r *Archive) Symlink(name, target string) {
	name = strings.Trim(name, "/")
	r.Dir(path.Dir(name))
	r.header(name, 0o120777, len(target), 1)
	r.buf.WriteString(target)
	r.pad()
}

// HostFile copies a file of the host into the archive.
func (r *Archive) HostFile(name, hostPath string, perm uint32) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	r.File(name, data, perm)
	return nil
}

// Bytes returns the gzip-compressed archive with its trailer.
func (r *Archive) Bytes() []byte {
	r.header("TRAILER!!!", 0, 0, 1)
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(r.buf.Bytes())
	zw.Close()
	return out.Bytes()
}

// Names lists the regular files added so far (for tests of the builder).
func (r *Archive) Names() []string {
	var n []string
	for f := range r.files {
		n = append(n, f)
	}
	sort.Strings(n)
	return n
}

// Raw returns the uncompressed archive with its trailer (for tools that
// merge archives, such as u-root's -base). Nothing may be added after it.
func (r *Archive) Raw() []byte {
	r.header("TRAILER!!!", 0, 0, 1)
	return r.buf.Bytes()
}
