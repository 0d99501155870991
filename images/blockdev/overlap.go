package blockdev

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// place is where a window's bytes live: one file (device and inode) or
// one whole block device, and the byte range in it.
type place struct {
	file       bool
	dev, ino   uint64 // a file: st_dev, st_ino; a block device: the whole disk's st_rdev
	start, end int64
}

// sysBlock is where a block device's partition attributes are read.
var sysBlock = "/sys/dev/block"

func (d *Dev) place() (place, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &st); err != nil {
		return place{}, fmt.Errorf("%s: stat: %w", d.Path, err)
	}
	p := place{start: d.Offset, end: d.Offset + d.Size}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		p.file, p.dev, p.ino = true, uint64(st.Dev), st.Ino
		return p, nil
	}
	p.dev = uint64(st.Rdev)
	// A partition's bytes are its whole disk's, from its start on.
	sys := fmt.Sprintf("%s/%d:%d", sysBlock, unix.Major(p.dev), unix.Minor(p.dev))
	if _, err := os.Stat(sys + "/partition"); err != nil {
		return p, nil
	}
	startB, err := os.ReadFile(sys + "/start")
	if err != nil {
		return place{}, fmt.Errorf("%s: partition start: %w", d.Path, err)
	}
	parentB, err := os.ReadFile(sys + "/../dev")
	if err != nil {
		return place{}, fmt.Errorf("%s: the partition's disk: %w", d.Path, err)
	}
	start, err1 := strconv.ParseInt(strings.TrimSpace(string(startB)), 10, 64)
	maj, min, ok := strings.Cut(strings.TrimSpace(string(parentB)), ":")
	ma, err2 := strconv.ParseUint(maj, 10, 32)
	mi, err3 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || !ok || err2 != nil || err3 != nil {
		return place{}, fmt.Errorf("%s: malformed partition attributes in %s", d.Path, sys)
	}
	p.dev = unix.Mkdev(uint32(ma), uint32(mi))
	p.start += start * 512
	p.end += start * 512
	return p, nil
}

// Overlaps reports whether the two windows share a byte: the same file
// (whatever path names it: links, "..", symlinks) or the same disk (a
// partition's device node counts as its disk's bytes from the partition's
// start), with intersecting ranges. An error means it cannot be told:
// treat it as an overlap.
func (d *Dev) Overlaps(o *Dev) (bool, error) {
	a, err := d.place()
	if err != nil {
		return true, err
	}
	b, err := o.place()
	if err != nil {
		return true, err
	}
	same := a.file == b.file && a.dev == b.dev && (!a.file || a.ino == b.ino)
	return same && a.start < b.end && b.start < a.end, nil
}
