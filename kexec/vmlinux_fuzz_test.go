package kexec

import (
	"encoding/binary"
	"testing"

	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// The image kernel comes from the bundle: vmlinux decodes any bzImage
// payload without panicking. Announced sizes past 4 MiB are left out to
// keep each run small (the bound itself, maxVmlinux, is checked before
// anything is allocated).
func FuzzVmlinux(f *testing.F) {
	kb := make([]byte, 8192)
	copy(kb[5*512:], []byte{0x28, 0xb5, 0x2f, 0xfd}) // zstd magic
	binary.LittleEndian.PutUint32(kb[5*512+60:], 4096)
	f.Add(kb, uint8(4), uint32(0), uint32(64))
	f.Fuzz(func(t *testing.T, kb []byte, sects uint8, off, size uint32) {
		h := &bzimage.LinuxHeader{SetupSects: sects, PayloadOffset: off, PayloadSize: size}
		start := (int(sects)+1)*512 + int(off)
		if sects == 0 {
			start = 5*512 + int(off)
		}
		end := start + int(size)
		if size >= 8 && end <= len(kb) && end > 4 && end-4 >= 0 && binary.LittleEndian.Uint32(kb[end-4:end]) > 4<<20 {
			return
		}
		vmlinux(kb, h)
	})
}
