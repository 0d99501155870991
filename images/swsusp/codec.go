package swsusp

import (
	"fmt"

	"github.com/pierrec/lz4/v4"

	"github.com/thawlinux/thaw/images/lzo"
)

// Block geometry of the compressed forms (kernel/power/swap.c).
const (
	blockPages  = 32                    // UNC_PAGES (LZO_UNC_PAGES in 6.1)
	blockSize   = blockPages * PageSize // UNC_SIZE
	blockHeader = 8                     // CMP_HEADER: the compressed length as a size_t
)

// maxCompressed is the largest compressed length a kernel accepts for one
// block: 6.12's bytes_worst_compress (6.1's lzo1x_worst_compress is 2 less;
// the Writer never exceeds that).
const maxCompressed = blockSize + blockSize/16 + 64 + 3 + 2

// compressBlock compresses one block; lz4c keeps the LZ4 hash table between
// blocks.
func compressBlock(c Compression, lz4c *lz4.Compressor, dst, src []byte) ([]byte, error) {
	switch c {
	case CompressLZO:
		out, err := lzo.Compress(dst, src)
		if err == nil && len(out) > lzo.WorstCase(len(src)) {
			err = fmt.Errorf("lzo output %d bytes above the worst case", len(out))
		}
		return out, err
	case CompressLZ4:
		out := dst[:cap(dst)]
		if len(out) < lz4.CompressBlockBound(len(src)) {
			out = make([]byte, lz4.CompressBlockBound(len(src)))
		}
		n, err := lz4c.CompressBlock(src, out)
		if err != nil {
			return nil, err
		}
		if n == 0 { // incompressible: lz4 says so; store a literal-only block
			n, err = literalLZ4(src, out)
			if err != nil {
				return nil, err
			}
		}
		return out[:n], nil
	}
	return nil, fmt.Errorf("swsusp: no block compression for %q", c)
}

// literalLZ4 encodes src as one LZ4 sequence of literals only, which every
// LZ4 block decoder accepts.
func literalLZ4(src, out []byte) (int, error) {
	n := len(src)
	o := 0
	if n < 15 {
		out[o] = byte(n << 4)
		o++
	} else {
		out[o] = 0xf0
		o++
		for r := n - 15; ; r -= 255 {
			if r < 255 {
				out[o] = byte(r)
				o++
				break
			}
			out[o] = 255
			o++
		}
	}
	if o+n > len(out) {
		return 0, fmt.Errorf("lz4: literal block of %d bytes does not fit %d", n, len(out))
	}
	o += copy(out[o:], src)
	return o, nil
}

func decompressBlock(c Compression, dst, src []byte) ([]byte, error) {
	switch c {
	case CompressLZO:
		// The kernel decompresses into a buffer of UNC_SIZE and refuses
		// a block that would not fit.
		return lzo.DecompressMax(dst[:0:blockSize], src, blockSize)
	case CompressLZ4:
		n, err := lz4.UncompressBlock(src, dst[:blockSize])
		if err != nil {
			return nil, err
		}
		return dst[:n], nil
	}
	return nil, fmt.Errorf("swsusp: no block decompression for %q", c)
}
