package physmem

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// Path is the file Read and Write map: /dev/mem, or a regular file in tests
// (an mmap of a file behaves the same, offsets standing for addresses).
var Path = "/dev/mem"

// Read returns size bytes of physical memory at addr.
func Read(addr, size uint64) ([]byte, error) {
	out := make([]byte, size)
	if size == 0 {
		return out, nil
	}
	err := withMap(addr, size, false, func(_, b []byte) error {
		copy(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Write stores data at physical address addr, flushes the mapping (msync)
// and reads it back: the error names the first address that does not hold
// what was written (ROM, or a range the kernel does not let through).
func Write(addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return withMap(addr, uint64(len(data)), true, func(m, b []byte) error {
		copy(b, data)
		// For a file msync stores the pages. /dev/mem has no fsync and
		// answers EINVAL: the stores went to memory already, and the
		// read-back below is the proof either way.
		if err := unix.Msync(m, unix.MS_SYNC); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("physmem: msync %#x+%#x: %w", addr, len(data), err)
		}
		return mismatch(addr, b, data)
	})
}

// mismatch names the first address where got, read back from addr, differs
// from want.
func mismatch(addr uint64, got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("physmem: wrote %d bytes at %#x, but %#x reads back %#02x, not %#02x",
				len(want), addr, addr+uint64(i), got[i], want[i])
		}
	}
	return nil
}

// withMap maps the pages of Path holding [addr, addr+size) and calls f with
// the whole mapping m and b, exactly that range within it. A fault while
// touching the mapping (a file shorter than the range, a bus error on a
// device) becomes an error, not a crash.
func withMap(addr, size uint64, write bool, f func(m, b []byte) error) (err error) {
	if addr+size < addr || addr+size > 1<<63 {
		return fmt.Errorf("physmem: range %#x+%#x overflows", addr, size)
	}
	page := uint64(os.Getpagesize())
	base := addr &^ (page - 1)
	mlen := (addr - base + size + page - 1) &^ (page - 1)
	if mlen > uint64(^uint(0)>>1) {
		return fmt.Errorf("physmem: range %#x+%#x too large to map", addr, size)
	}

	flag, prot := os.O_RDONLY, unix.PROT_READ
	if write {
		flag, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	file, err := os.OpenFile(Path, flag, 0)
	if err != nil {
		return fmt.Errorf("physmem: %w", err)
	}
	defer file.Close()
	if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() && addr+size > uint64(fi.Size()) {
		return fmt.Errorf("physmem: range %#x+%#x lies beyond the end of %s (%#x bytes)", addr, size, Path, fi.Size())
	}

	m, err := unix.Mmap(int(file.Fd()), int64(base), int(mlen), prot, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("physmem: mmap %s at %#x+%#x: %w", Path, base, mlen, err)
	}
	defer unix.Munmap(m)

	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("physmem: fault touching %#x+%#x of %s: %v", addr, size, Path, r)
		}
	}()
	return f(m, m[addr-base:addr-base+size])
}
