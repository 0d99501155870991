// Package blockdev opens the places thaw reads and writes images and disks:
// a block device, a regular file, or one partition of either named as
// PATH#N (the N-th entry of its GPT, read with go-diskfs), as a window with
// ReadAt, WriteAt, Sync and a size. A window never reads or writes outside
// itself.
package blockdev
