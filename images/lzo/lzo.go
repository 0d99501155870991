package lzo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	golzo "github.com/anchore/go-lzo"
)

// Constants of the LZO1X format and of the LZO1X-1 compressor, named as in
// the kernel's lib/lzo/lzodefs.h.
const (
	m2MaxLen = 8
	m3MaxLen = 33
	m4MaxLen = 9

	m2MaxOffset = 0x0800
	m3MaxOffset = 0x4000
	m4MaxOffset = 0xbfff // M4_MAX_OFFSET_V0

	m3Marker = 32
	m4Marker = 16

	dBits = 13
	dSize = 1 << dBits

	// blockSize is how much input the compressor matches within before it
	// clears its dictionary: a match never reaches further back than
	// m4MaxOffset, and dictionary entries fit in 16 bits.
	blockSize = m4MaxOffset + 1

	// maxExpansion bounds how many output bytes one input byte of an LZO1X
	// stream can produce (a match length extension byte stands for 255).
	maxExpansion = 255

	// maxInput is the largest input whose WorstCase fits in an int.
	maxInput = (math.MaxInt - 67) / 17 * 16
)

// WorstCase returns the largest size that Compress can produce for n bytes
// of input. It is the kernel's lzo1x_worst_compress(n):
// n + n/16 + 64 + 3.
func WorstCase(n int) int {
	return n + n/16 + 64 + 3
}

// Compress returns the LZO1X-1 compressed form of src, a complete stream
// ending with the end-of-stream marker.
//
// The result starts at the beginning of dst's backing array, whatever
// len(dst) is, when cap(dst) >= WorstCase(len(src)); then it aliases dst
// and whatever dst held is overwritten. Otherwise the result is newly
// allocated and dst is left untouched. dst and src must not overlap.
//
// The only error is for an input so large that WorstCase(len(src)) would
// overflow an int.
func Compress(dst, src []byte) ([]byte, error) {
	n := len(src)
	if n > maxInput {
		return nil, fmt.Errorf("lzo: input length %d exceeds the maximum of %d bytes", n, maxInput)
	}
	need := WorstCase(n)
	var out []byte
	if cap(dst) >= need {
		out = dst[:need]
	} else {
		out = make([]byte, need)
	}

	var dict [dSize]uint16
	op := 0 // output position
	ip := 0 // start of the next block
	l := n  // input left after ip
	t := 0  // literals not yet emitted, ending at ip
	for l > 20 {
		ll := min(l, blockSize)
		if (t+ll)>>5 == 0 {
			// The kernel's pointer-overflow check has this effect too:
			// fewer than 32 bytes, pending literals included, stay
			// literals.
			break
		}
		clear(dict[:])
		t, op = compressBlock(out, op, src, ip, ll, t, &dict)
		ip += ll
		l -= ll
	}
	t += l

	if t > 0 {
		ii := n - t
		switch {
		case op == 0 && t <= 238:
			out[op] = byte(17 + t)
			op++
		case t <= 3:
			out[op-2] |= byte(t)
		case t <= 18:
			out[op] = byte(t - 3)
			op++
		default:
			out[op] = 0
			op = putLength(out, op+1, t-18)
		}
		op += copy(out[op:], src[ii:])
	}

	out[op] = m4Marker | 1
	out[op+1] = 0
	out[op+2] = 0
	op += 3
	return out[:op], nil
}

// compressBlock compresses src[in:in+inLen], whose preceding ti bytes are
// literals not yet emitted, into out[op:]. Matches are looked for only
// within the block. It returns the number of literals left for the next
// call (the tail of the block that no match covered, plus ti if no match
// was found) and the new output position.
//
// This is the kernel's lzo1x_1_do_compress with bitstream version 0.
func compressBlock(out []byte, op int, src []byte, in, inLen, ti int, dict *[dSize]uint16) (int, int) {
	inEnd := in + inLen
	ipEnd := inEnd - 20
	ii := in // start of the pending literals within this block
	ip := in
	if ti < 4 {
		ip += 4 - ti
	}
	// Advance past a literal, faster the longer the literal run gets.
	ip += 1 + (ip-ii)>>5

	for ip < ipEnd {
		dv := binary.LittleEndian.Uint32(src[ip:])
		h := (dv * 0x1824429d) >> (32 - dBits)
		mPos := in + int(dict[h])
		dict[h] = uint16(ip - in)
		if dv != binary.LittleEndian.Uint32(src[mPos:]) {
			ip += 1 + (ip-ii)>>5
			continue
		}

		// Emit the literals before the match.
		ii -= ti
		ti = 0
		if t := ip - ii; t != 0 {
			switch {
			case t <= 3:
				// Stored in the S bits of the previous match.
				out[op-2] |= byte(t)
			case t <= 18:
				out[op] = byte(t - 3)
				op++
			default:
				out[op] = 0
				op = putLength(out, op+1, t-18)
			}
			op += copy(out[op:], src[ii:ip])
		}

		// The first four bytes match; find the rest. The length is
		// measured eight bytes at a time and stops growing once it
		// reaches ipEnd, exactly like the kernel's, so that the output is
		// the same.
		mLen := 4
		for {
			v := binary.LittleEndian.Uint64(src[ip+mLen:]) ^ binary.LittleEndian.Uint64(src[mPos+mLen:])
			if v != 0 {
				mLen += bits.TrailingZeros64(v) >> 3
				break
			}
			mLen += 8
			if ip+mLen >= ipEnd {
				break
			}
		}

		mOff := ip - mPos
		ip += mLen
		switch {
		case mLen <= m2MaxLen && mOff <= m2MaxOffset:
			// M2: 0b LLDDDSS, HHHHHHHH.
			mOff--
			out[op] = byte((mLen-1)<<5 | (mOff&7)<<2)
			out[op+1] = byte(mOff >> 3)
			op += 2
		case mOff <= m3MaxOffset:
			// M3: 001LLLLL [length bytes], DDDDDDSS, DDDDDDDD.
			mOff--
			if mLen <= m3MaxLen {
				out[op] = byte(m3Marker | (mLen - 2))
				op++
			} else {
				out[op] = m3Marker
				op = putLength(out, op+1, mLen-m3MaxLen)
			}
			out[op] = byte(mOff << 2)
			out[op+1] = byte(mOff >> 6)
			op += 2
		default:
			// M4: 0001HLLL [length bytes], DDDDDDSS, DDDDDDDD.
			mOff -= 0x4000
			h := (mOff >> 11) & 8
			if mLen <= m4MaxLen {
				out[op] = byte(m4Marker | h | (mLen - 2))
				op++
			} else {
				out[op] = byte(m4Marker | h)
				op = putLength(out, op+1, mLen-m4MaxLen)
			}
			out[op] = byte(mOff << 2)
			out[op+1] = byte(mOff >> 6)
			op += 2
		}
		ii = ip
	}
	return inEnd - (ii - ti), op
}

// putLength writes x >= 1 as a run of zero bytes, each standing for 255,
// followed by the remainder 1..255, and returns the new output position.
func putLength(out []byte, op, x int) int {
	z := (x - 1) / 255
	clear(out[op : op+z])
	op += z
	out[op] = byte(x - 255*z)
	return op + 1
}

// Decompress returns the decompressed form of the LZO1X stream src.
//
// The result is written from the beginning of dst's backing array,
// whatever len(dst) is, when cap(dst) is large enough for it; then it
// aliases dst. Otherwise the result is newly allocated (and dst's contents
// may still have been overwritten by a first attempt). LZO1X streams do
// not record their decompressed size, so a caller that knows it (such as
// the 128 KiB of a hibernation image block) should pass a dst with that
// capacity and check the length of the result. Without one, Decompress
// retries with larger buffers, up to 255 times len(src), the most an
// LZO1X stream can expand.
//
// Like the kernel's lzo1x_decompress_safe, Decompress accepts a stream
// that starts with the version header 0x11 0x00 (bitstream version 0) and
// at least five bytes long; streams of any other version (lzo-rle) are
// rejected with an error wrapping errors.ErrUnsupported.
//
// Errors from the decompressor wrap the sentinel errors of
// github.com/anchore/go-lzo (such as ErrInputOverrun and
// ErrLookbehindOverrun) and say at which output offset decoding stopped.
func Decompress(dst, src []byte) ([]byte, error) { return decompress(dst, src, math.MaxInt) }

// DecompressMax is Decompress for a stream that may produce at most max
// bytes, as the kernel's decompressor into a fixed buffer allows (a
// hibernation image block: 128 KiB). A stream that would produce more is
// an error naming the bound.
func DecompressMax(dst, src []byte, max int) ([]byte, error) {
	if max <= 0 {
		return nil, fmt.Errorf("lzo: bound %d on the decompressed size", max)
	}
	return decompress(dst, src, max)
}

func decompress(dst, src []byte, bound int) ([]byte, error) {
	body := src
	if len(src) >= 5 && src[0] == 17 {
		if v := src[1]; v != 0 {
			return nil, fmt.Errorf("lzo: byte 1 (bitstream version) is %d: lzo-rle streams are not supported: %w", v, errors.ErrUnsupported)
		}
		body = src[2:]
	}

	// The most the stream can produce, and a first guess at what it will.
	limit, guess := math.MaxInt, math.MaxInt
	if len(body) <= math.MaxInt/maxExpansion {
		limit = maxExpansion * len(body)
		guess = min(max(4*len(body), 4096), limit)
	}
	if bound < limit {
		limit = bound
		guess = min(guess, bound)
	}
	size := min(cap(dst), limit)
	if size == 0 {
		size = guess
	}
	for {
		var out []byte
		if size <= cap(dst) {
			out = dst[:size]
		} else {
			out = make([]byte, size)
		}
		n, err := golzo.Decompress(body, out)
		switch {
		case err == nil:
			return out[:n], nil
		case errors.Is(err, golzo.ErrOutputOverrun) && size < limit:
			if size > limit/2 {
				size = limit
			} else {
				size = max(2*size, guess)
			}
		case errors.Is(err, golzo.ErrOutputOverrun) && limit == bound:
			return nil, fmt.Errorf("lzo: the %d-byte stream decompresses to more than %d bytes, the most allowed here: %w",
				len(src), bound, err)
		case errors.Is(err, golzo.ErrOutputOverrun):
			return nil, fmt.Errorf("lzo: decompressing %d-byte stream: output overruns a %d-byte buffer at output offset %d: %w",
				len(src), size, n, err)
		default:
			return nil, fmt.Errorf("lzo: decompressing %d-byte stream: failed at output offset %d: %w",
				len(src), n, err)
		}
	}
}
