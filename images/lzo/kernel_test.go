package lzo

import "encoding/binary"

// Result codes of the kernel's lzo1x_decompress_safe (include/linux/lzo.h).
const (
	kOK               = 0
	kError            = -1
	kOutputOverrun    = -5
	kInputOverrun     = -4
	kLookbehindOver   = -6
	kInputNotConsumed = -8
	kUnsupported      = -100 // lzo-rle stream; not a kernel code
)

// streamStats counts the instructions of a stream, so that tests can check
// that the compressor used the encodings they mean to exercise.
type streamStats struct {
	m1, m2, m3, m4 int // matches by encoding
	literalRuns    int // literal runs of 4 or more bytes (incl. the first byte form)
	maxMatch       int // longest match
	maxM4Match     int // longest M4 match
	maxDistance    int // farthest match distance
}

func (s *streamStats) match(kind *int, length, dist int) {
	*kind++
	s.maxMatch = max(s.maxMatch, length)
	s.maxDistance = max(s.maxDistance, dist)
}

// kernelDecompress decodes src as the kernel's lzo1x_decompress_safe
// (lib/lzo/lzo1x_decompress_safe.c, the path without the unaligned-access
// shortcuts) does, into a buffer of outCap bytes. It is a second, independent
// decoder for the tests: it returns the kernel's result code rather than
// trusting the package under test or anchore/go-lzo. lzo-rle streams
// (bitstream version != 0) return kUnsupported.
func kernelDecompress(src []byte, outCap int) ([]byte, int, streamStats) {
	var st streamStats
	out := make([]byte, 0, outCap)
	ip := 0
	state := 0
	haveIP := func(x int) bool { return x >= 0 && len(src)-ip >= x }
	haveOP := func(x int) bool { return x >= 0 && outCap-len(out) >= x }
	// runLength reads the zero bytes and final byte of an extended length,
	// like the kernel's loop: at least one byte must follow each zero.
	runLength := func(base int) (int, bool) {
		if !haveIP(1) {
			return 0, false
		}
		zeros := 0
		for src[ip] == 0 {
			ip++
			zeros++
			if !haveIP(1) {
				return 0, false
			}
		}
		n := zeros*255 + base + int(src[ip])
		ip++
		return n, true
	}

	if len(src) < 3 {
		return out, kInputOverrun, st
	}
	if len(src) >= 5 && src[0] == 17 {
		if src[1] != 0 {
			return out, kUnsupported, st
		}
		ip = 2
	}

	var t, next int
	copyLiterals := func(n int) int {
		if !haveOP(n) {
			return kOutputOverrun
		}
		if !haveIP(n + 3) {
			return kInputOverrun
		}
		out = append(out, src[ip:ip+n]...)
		ip += n
		return kOK
	}

	first := true
	for {
		var mPos int // index into out
		if first && src[ip] > 17 {
			first = false
			t = int(src[ip]) - 17
			ip++
			if t >= 4 {
				st.literalRuns++
				if rc := copyLiterals(t); rc != kOK {
					return out, rc, st
				}
				state = 4
				continue
			}
			next = t
			goto matchNext
		}
		first = false

		if !haveIP(1) {
			return out, kInputOverrun, st
		}
		t = int(src[ip])
		ip++
		switch {
		case t < 16 && state == 0:
			if t == 0 {
				n, ok := runLength(15)
				if !ok {
					return out, kInputOverrun, st
				}
				t = n
			}
			t += 3
			st.literalRuns++
			if rc := copyLiterals(t); rc != kOK {
				return out, rc, st
			}
			state = 4
			continue
		case t < 16 && state != 4:
			// M1: two bytes from at most 1 KiB back.
			if !haveIP(1) {
				return out, kInputOverrun, st
			}
			next = t & 3
			mPos = len(out) - 1 - t>>2 - int(src[ip])<<2
			ip++
			if mPos < 0 {
				return out, kLookbehindOver, st
			}
			if !haveOP(2) {
				return out, kOutputOverrun, st
			}
			st.match(&st.m1, 2, len(out)-mPos)
			// Distance 1 overlaps: the second byte is the first one copied.
			out = append(out, out[mPos])
			out = append(out, out[mPos+1])
			goto matchNext
		case t < 16:
			// M1 after a literal run: three bytes from 2..3 KiB back.
			if !haveIP(1) {
				return out, kInputOverrun, st
			}
			next = t & 3
			mPos = len(out) - (1 + m2MaxOffset) - t>>2 - int(src[ip])<<2
			ip++
			t = 3
			st.match(&st.m1, 3, len(out)-mPos)
		case t >= 64:
			if !haveIP(1) {
				return out, kInputOverrun, st
			}
			next = t & 3
			mPos = len(out) - 1 - (t>>2)&7 - int(src[ip])<<3
			ip++
			t = t>>5 - 1 + 2
			st.match(&st.m2, t, len(out)-mPos)
		case t >= 32:
			t = t&31 + 2
			if t == 2 {
				n, ok := runLength(31)
				if !ok {
					return out, kInputOverrun, st
				}
				t += n
			}
			if !haveIP(2) {
				return out, kInputOverrun, st
			}
			next = int(binary.LittleEndian.Uint16(src[ip:]))
			ip += 2
			mPos = len(out) - 1 - next>>2
			next &= 3
			st.match(&st.m3, t, len(out)-mPos)
		default: // 16..31: M4 or end of stream
			if !haveIP(2) {
				return out, kInputOverrun, st
			}
			mPos = len(out) - (t&8)<<11
			t = t&7 + 2
			if t == 2 {
				n, ok := runLength(7)
				if !ok {
					return out, kInputOverrun, st
				}
				t += n
				if !haveIP(2) {
					return out, kInputOverrun, st
				}
			}
			next = int(binary.LittleEndian.Uint16(src[ip:]))
			ip += 2
			mPos -= next >> 2
			next &= 3
			if mPos == len(out) {
				switch {
				case t != 3:
					return out, kError, st
				case ip == len(src):
					return out, kOK, st
				default:
					return out, kInputNotConsumed, st
				}
			}
			mPos -= 0x4000
			st.match(&st.m4, t, len(out)-mPos)
			st.maxM4Match = max(st.maxM4Match, t)
		}

		// Copy t bytes from mPos; they may overlap the bytes being written.
		if mPos < 0 {
			return out, kLookbehindOver, st
		}
		if !haveOP(t) {
			return out, kOutputOverrun, st
		}
		for i := 0; i < t; i++ {
			out = append(out, out[mPos+i])
		}

	matchNext:
		state = next
		if !haveIP(next + 3) {
			return out, kInputOverrun, st
		}
		if !haveOP(next) {
			return out, kOutputOverrun, st
		}
		out = append(out, src[ip:ip+next]...)
		ip += next
	}
}
