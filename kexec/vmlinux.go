package kexec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// maxVmlinux bounds the decompressed kernel a header may announce.
const maxVmlinux = 512 << 20

// errOtherCompression sends vmlinux's caller to u-root's general decoder.
var errOtherCompression = errors.New("payload compression not decoded here")

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	gzipMagic = []byte{0x1f, 0x8b}
)

// vmlinux returns the ELF kernel compressed inside the bzImage kb with
// header h, decoded straight into a buffer of the size the payload's last
// four bytes announce (arch/x86/boot/compressed/Makefile, size_append).
// bzimage.UnmarshalBinary decodes the same payload, but copies the image
// twice and grows its output by doubling; its zstd reader also keeps a
// history ring as large as the frame's window (128 MiB for Debian's
// kernels). For the compressions Debian uses (zstd in 13, xz in 12) and
// gzip, this costs the output plus the decoder's own state (xz: its
// dictionary, 32 MiB for a kernel); other payloads return
// errOtherCompression.
func vmlinux(kb []byte, h *bzimage.LinuxHeader) ([]byte, error) {
	sects := int(h.SetupSects)
	if sects == 0 {
		sects = 4
	}
	start := (sects+1)*512 + int(h.PayloadOffset)
	end := start + int(h.PayloadSize)
	if h.PayloadSize < 8 || end > len(kb) {
		return nil, fmt.Errorf("payload [%#x-%#x) (payload_offset at 0x248, payload_length at 0x24c) outside the file's %#x bytes", start, end, len(kb))
	}
	payload := kb[start:end]
	size := binary.LittleEndian.Uint32(payload[len(payload)-4:])
	if size < 64 || size > maxVmlinux {
		return nil, fmt.Errorf("the payload announces a %d-byte kernel", size)
	}
	out := make([]byte, size)
	var err error
	switch {
	case bytes.HasPrefix(payload, zstdMagic):
		var dec *zstd.Decoder
		// DecodeAll uses its output as the history, so the frame's
		// window (128 MiB for Debian's kernels) costs nothing; the
		// output may not outgrow the buffer.
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(maxVmlinux), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		var got []byte
		got, err = dec.DecodeAll(payload[:len(payload)-4], out[:0])
		dec.Close()
		if err == nil && len(got) != len(out) {
			err = fmt.Errorf("%d bytes, the payload announces %d", len(got), len(out))
		}
	case bytes.HasPrefix(payload, xzMagic):
		var r *xz.Reader
		if r, err = xz.NewReader(bytes.NewReader(payload[:len(payload)-4]), 0); err == nil {
			err = readExactly(r, out)
		}
	case bytes.HasPrefix(payload, gzipMagic):
		// gzip's own trailer ends with the size: nothing appended.
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(payload)); err == nil {
			err = readExactly(r, out)
		}
	default:
		return nil, errOtherCompression
	}
	if err != nil {
		return nil, fmt.Errorf("decompressing the payload: %w", err)
	}
	return out, nil
}

// readExactly fills out from r and checks r has nothing more.
func readExactly(r io.Reader, out []byte) error {
	if _, err := io.ReadFull(r, out); err != nil {
		return err
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n != 0 {
		return fmt.Errorf("more than the %d bytes the payload announces", len(out))
	}
	return nil
}
