// Package lzo implements LZO1X-1 compression as the Linux kernel uses it,
// with decompression in the same place.
//
// The Linux kernel's hibernation code (kernel/power/swap.c) writes the
// hibernation image to swap in blocks of 32 pages (LZO_UNC_SIZE, 128 KiB
// with 4 KiB pages), each compressed with lzo1x_1_compress and read back
// with lzo1x_decompress_safe. This package produces and reads that
// format: raw LZO1X streams with no header, no checksum and no length
// field, terminated by the end-of-stream marker 0x11 0x00 0x00.
//
// [Compress] follows the algorithm of the kernel's
// lib/lzo/lzo1x_compress.c: a 2^13-entry dictionary indexed by a hash of
// the next four input bytes, input processed in 48 KiB (0xbfff + 1 byte)
// blocks, literal runs and M2/M3/M4 match encodings. It emits only the
// original LZO1X bitstream (the kernel's "version 0"), never the
// zero-run extension of lzo-rle ("version 1"), so every LZO1X
// decompressor, old kernels and liblzo2 included, reads its output. For
// the same input it produces the same bytes as the kernel's
// lzo1x_1_compress.
//
// [Decompress] is a thin wrapper around the decompressor of
// github.com/anchore/go-lzo that grows the output buffer as needed,
// accepts the kernel's optional version-0 stream header like
// lzo1x_decompress_safe does, and reports where a corrupt stream failed.
package lzo
