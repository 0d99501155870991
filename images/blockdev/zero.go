package blockdev

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNoZeroOffload is returned by ZeroRange when neither the file system
// nor the device can make a range read as zeros without writing them.
var ErrNoZeroOffload = errors.New("no zeroing offload")

// ZeroRange makes n bytes at off read as zeros without writing them: a
// hole punched in a regular file (it stays sparse), or on a block device
// the device's own zeroing (WRITE ZEROES, or a discard that guarantees
// zeros), never a fallback that writes zero pages. Where neither exists it
// returns an error wrapping ErrNoZeroOffload and changes nothing.
func (d *Dev) ZeroRange(off, n int64) error {
	if off < 0 || n < 0 || off+n > d.Size {
		return fmt.Errorf("%s: zeroing %d bytes at %d outside its %d bytes", d.Ref, n, off, d.Size)
	}
	if n == 0 {
		return nil
	}
	// A hole in a file; on a block device (blkdev_fallocate) PUNCH_HOLE is
	// blkdev_issue_zeroout with BLKDEV_ZERO_NOFALLBACK: WRITE ZEROES or
	// EOPNOTSUPP, never zero pages written by the kernel (ZERO_RANGE
	// would fall back to writing them).
	err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, d.Offset+off, n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%s: bytes %d+%d: %w (%v)", d.Ref, off, n, ErrNoZeroOffload, err)
	}
	return fmt.Errorf("%s: zeroing bytes %d+%d: %w", d.Ref, off, n, err)
}
