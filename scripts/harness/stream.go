package harness

import (
	"bytes"
	"encoding/binary"

	"github.com/thawlinux/thaw/images/swsusp"
)

// SnapshotStream is a snapshot stream as /dev/snapshot hands it out, of n
// data pages: the swsusp_info page (x86 arch magic), one metadata page of
// PFNs from 0x100, and page i filled with the byte i+1. n is at most 511.
func SnapshotStream(n int) []byte {
	le := binary.LittleEndian
	info := make([]byte, swsusp.PageSize)
	le.PutUint64(info[24:], swsusp.RestoreMagic)
	le.PutUint64(info[400:], uint64(4*n))
	le.PutUint64(info[416:], uint64(n))
	le.PutUint64(info[424:], uint64(n+2))
	le.PutUint64(info[432:], uint64(n+2)*swsusp.PageSize)
	meta := make([]byte, swsusp.PageSize)
	for i := 0; i < n; i++ {
		le.PutUint64(meta[i*8:], uint64(0x100+i))
	}
	le.PutUint64(meta[n*8:], ^uint64(0))
	out := append(info, meta...)
	for i := 0; i < n; i++ {
		out = append(out, bytes.Repeat([]byte{byte(i + 1)}, swsusp.PageSize)...)
	}
	return out
}
