package lzo

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	golzo "github.com/anchore/go-lzo"
)

const pageSize = 4096

// randomBytes returns n pseudo-random bytes, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	_, _ = r.Read(b)
	return b
}

// textBytes returns n bytes of English-like text made of a small
// vocabulary, which LZO compresses moderately. The generator is spelled out
// here so that the bytes never change between Go releases.
func textBytes(seed uint64, n int) []byte {
	words := strings.Fields(`the kernel writes the hibernation image to swap in
		blocks of thirty two pages each compressed with lzo before it powers
		off and on resume the boot loader starts a kernel that reads the
		image back decompresses every block restores the pages and jumps
		into the saved context of the frozen system`)
	next := func() uint64 { // splitmix64
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[next()%uint64(len(words))])
		if next()%12 == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// repeatBytes returns n bytes repeating pattern.
func repeatBytes(pattern []byte, n int) []byte {
	return bytes.Repeat(pattern, n/len(pattern)+1)[:n]
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// hibernationBlock returns 32 pages as the kernel's swap writer might see
// them: zero pages, random (already compressed or encrypted) pages, text
// pages and pages of repeated small structures, mixed.
func hibernationBlock(seed uint64) []byte {
	b := make([]byte, 0, 32*pageSize)
	for i := range 32 {
		switch i % 5 {
		case 0, 3:
			b = append(b, make([]byte, pageSize)...)
		case 1:
			b = append(b, randomBytes(seed+uint64(i), pageSize)...)
		case 2:
			b = append(b, textBytes(seed+uint64(i), pageSize)...)
		case 4:
			// A page of 64-byte records: a pointer-like counter, then zeros.
			page := make([]byte, pageSize)
			for j := 0; j < pageSize; j += 64 {
				page[j] = byte(j >> 6)
				page[j+1] = 0x80
				page[j+7] = 0xff
			}
			b = append(b, page...)
		}
	}
	return b
}

// checkRoundTrip compresses src, checks the result against the format's
// rules and decodes it with anchore/go-lzo, with the kernel reference
// decoder and with Decompress. It returns the compressed stream and the
// reference decoder's statistics.
func checkRoundTrip(t testing.TB, src []byte) ([]byte, streamStats) {
	t.Helper()
	c, err := Compress(nil, src)
	if err != nil {
		t.Fatalf("Compress(%d bytes): %v", len(src), err)
	}
	if len(c) > WorstCase(len(src)) {
		t.Fatalf("Compress(%d bytes) = %d bytes, more than WorstCase %d", len(src), len(c), WorstCase(len(src)))
	}
	if len(c) < 3 || !bytes.Equal(c[len(c)-3:], []byte{0x11, 0, 0}) {
		t.Fatalf("Compress(%d bytes) does not end with the end-of-stream marker: % x", len(src), c[max(0, len(c)-8):])
	}
	// A stream of five or more bytes starting with 17 would be read by the
	// kernel as carrying a bitstream version header.
	if len(c) >= 5 && c[0] == 17 {
		t.Fatalf("Compress(%d bytes) starts with 0x11: would be taken for an lzo-rle header", len(src))
	}

	// anchore/go-lzo, into a buffer of exactly the original size.
	out := make([]byte, len(src))
	n, err := golzo.Decompress(c, out)
	if err != nil {
		t.Fatalf("anchore/go-lzo rejects the compressed form of %d bytes: %v (after %d bytes)", len(src), err, n)
	}
	if n != len(src) || !bytes.Equal(out[:n], src) {
		t.Fatalf("anchore/go-lzo round trip of %d bytes gave %d bytes, different", len(src), n)
	}

	// The kernel's lzo1x_decompress_safe, likewise with an exact buffer.
	kout, rc, st := kernelDecompress(c, len(src))
	if rc != kOK {
		t.Fatalf("kernel reference decoder rejects the compressed form of %d bytes: code %d after %d bytes", len(src), rc, len(kout))
	}
	if !bytes.Equal(kout, src) {
		t.Fatalf("kernel reference decoder round trip of %d bytes gave %d bytes, different", len(src), len(kout))
	}

	// This package's Decompress, with no size hint.
	d, err := Decompress(nil, c)
	if err != nil {
		t.Fatalf("Decompress of the compressed form of %d bytes: %v", len(src), err)
	}
	if !bytes.Equal(d, src) {
		t.Fatalf("Decompress round trip of %d bytes gave %d bytes, different", len(src), len(d))
	}
	return c, st
}

func TestRoundTrip(t *testing.T) {
	const k128 = 128 << 10
	far := randomBytes(7, 4096)
	mid := randomBytes(8, 1024)
	tests := []struct {
		name string
		src  []byte
		// maxLen, when set, is the largest acceptable compressed size.
		maxLen int
		// check, when set, inspects the instructions of the stream.
		check func(t *testing.T, st streamStats)
	}{
		{name: "empty", src: nil},
		{name: "1 byte", src: []byte{'x'}},
		{name: "3 bytes", src: []byte("abc")},
		{name: "20 bytes", src: []byte("0123456789abcdefghij")},
		{name: "21 zero bytes", src: make([]byte, 21)},
		{name: "238 random bytes", src: randomBytes(1, 238)},
		{name: "239 random bytes", src: randomBytes(1, 239)},
		{
			name: "zeros 128 KiB", src: make([]byte, k128), maxLen: 1024,
		},
		{name: "random 128 KiB", src: randomBytes(2, k128), maxLen: WorstCase(k128)},
		{name: "text 64 KiB", src: textBytes(3, 64<<10), maxLen: 64 << 10 / 2},
		{
			name: "short period", src: repeatBytes([]byte("abcdefg"), 50000), maxLen: 2000,
			check: func(t *testing.T, st streamStats) {
				if st.maxMatch <= 264 {
					t.Errorf("longest match %d, want > 264", st.maxMatch)
				}
			},
		},
		{
			// A 1000-byte block repeated: matches 1000 bytes back, beyond
			// M2's reach in length, so M3 with long lengths.
			name: "repeated 1000-byte block", src: repeatBytes(randomBytes(4, 1000), 100000), maxLen: 4000,
			check: func(t *testing.T, st streamStats) {
				if st.m3 == 0 || st.maxMatch <= 264 {
					t.Errorf("M3 matches %d, longest %d: want M3 matches longer than 264", st.m3, st.maxMatch)
				}
			},
		},
		{
			// The same 1 KiB 4 KiB apart: beyond M2's 2 KiB.
			name: "repeat beyond 2 KiB",
			src:  concat(mid, repeatBytes([]byte("0123456789"), 3072), mid, make([]byte, 100)),
			check: func(t *testing.T, st streamStats) {
				if st.m3 == 0 || st.maxDistance <= 2048 {
					t.Errorf("M3 matches %d, farthest %d: want an M3 match beyond 2 KiB", st.m3, st.maxDistance)
				}
			},
		},
		{
			// The same 4 KiB 24 KiB apart: beyond M3's 16 KiB, so M4.
			name: "repeat beyond 16 KiB",
			src:  concat(far, repeatBytes([]byte("abcdefghijk"), 20<<10), far, make([]byte, 100)),
			check: func(t *testing.T, st streamStats) {
				if st.m4 == 0 || st.maxDistance <= 16384 {
					t.Errorf("M4 matches %d, farthest %d: want an M4 match beyond 16 KiB", st.m4, st.maxDistance)
				}
				if st.maxM4Match <= 264 {
					t.Errorf("longest M4 match %d, want > 264", st.maxM4Match)
				}
			},
		},
		{
			// A match nearly as far back as a block allows (0xbfff), then
			// input continuing into a second block.
			name: "repeat near 0xbfff",
			src:  concat(far[:64], make([]byte, blockSize-84-64), far[:64], make([]byte, 20), far[:200]),
			check: func(t *testing.T, st streamStats) {
				if st.m4 == 0 || st.maxDistance < blockSize-100 {
					t.Errorf("M4 matches %d, farthest %d: want an M4 match at least %d back", st.m4, st.maxDistance, blockSize-100)
				}
			},
		},
		{name: "hibernation block", src: hibernationBlock(10), maxLen: 128 << 10},
		{name: "two hibernation blocks", src: concat(hibernationBlock(11), hibernationBlock(12))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, st := checkRoundTrip(t, tt.src)
			if tt.maxLen > 0 && len(c) > tt.maxLen {
				t.Errorf("compressed %d bytes to %d, want at most %d", len(tt.src), len(c), tt.maxLen)
			}
			if tt.check != nil {
				tt.check(t, st)
			}
			t.Logf("%d -> %d bytes; M1 %d M2 %d M3 %d M4 %d, literal runs %d, longest match %d, farthest %d",
				len(tt.src), len(c), st.m1, st.m2, st.m3, st.m4, st.literalRuns, st.maxMatch, st.maxDistance)
		})
	}
}

// TestRoundTripSizes runs every length around the compressor's thresholds
// (the 20-byte tail, the 238-byte first literal, the 48 KiB block) over
// several kinds of content.
func TestRoundTripSizes(t *testing.T) {
	kinds := map[string]func(n int) []byte{
		"zeros":  func(n int) []byte { return make([]byte, n) },
		"random": func(n int) []byte { return randomBytes(uint64(n), n) },
		"text":   func(n int) []byte { return textBytes(uint64(n), n) },
		"mixed":  func(n int) []byte { return concat(hibernationBlock(uint64(n)), hibernationBlock(uint64(n)+1))[:n] },
	}
	var sizes []int
	for n := 0; n <= 300; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range []int{blockSize, 2 * blockSize} {
		for d := -25; d <= 25; d++ {
			sizes = append(sizes, n+d)
		}
	}
	for name, gen := range kinds {
		t.Run(name, func(t *testing.T) {
			for _, n := range sizes {
				checkRoundTrip(t, gen(n))
			}
		})
	}
}

// TestCompressExact pins the encoding of small inputs.
func TestCompressExact(t *testing.T) {
	tests := []struct {
		src  []byte
		want []byte
	}{
		{nil, []byte{0x11, 0, 0}},
		{[]byte("a"), []byte{18, 'a', 0x11, 0, 0}},
		{[]byte("abc"), []byte{20, 'a', 'b', 'c', 0x11, 0, 0}},
		// Under 32 bytes the kernel emits only literals.
		{make([]byte, 31), concat([]byte{17 + 31}, make([]byte, 31), []byte{0x11, 0, 0})},
		// 32 zeros: five literals, an M3 match of 12 bytes at distance 5
		// (match lengths stop growing 20 bytes before the end), then the
		// remaining 15 bytes as literals.
		{make([]byte, 32), concat([]byte{2}, make([]byte, 5), []byte{0x2a, 0x10, 0x00, 0x0c}, make([]byte, 15), []byte{0x11, 0, 0})},
	}
	for _, tt := range tests {
		got, err := Compress(nil, tt.src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("Compress(% x) = % x, want % x", tt.src, got, tt.want)
		}
	}
}

// goldenInputs are inputs whose compressed form is pinned by
// TestKernelGolden.
func goldenInputs() map[string][]byte {
	far := randomBytes(7, 4096)
	return map[string][]byte{
		"zeros 128 KiB":       make([]byte, 128<<10),
		"text 64 KiB":         textBytes(3, 64<<10),
		"hibernation block":   hibernationBlock(10),
		"two blocks":          concat(hibernationBlock(11), hibernationBlock(12)),
		"repeat beyond 16KiB": concat(far, repeatBytes([]byte("abcdefghijk"), 20<<10), far, make([]byte, 100)),
		"period 1000":         repeatBytes(randomBytes(4, 1000), 100000),
		"text 49173":          textBytes(5, blockSize+21),
	}
}

// TestKernelGolden checks that Compress produces the same bytes as the
// kernel's lzo1x_1_compress. The lengths and SHA-256 sums were taken from
// lib/lzo/lzo1x_compress.c built as a user-space program, both with the
// x86-64 (64-bit ctz) and the generic byte-wise match-length code.
func TestKernelGolden(t *testing.T) {
	golden := map[string]struct {
		n   int
		sum string
	}{
		"hibernation block":   {42186, "a807672d1d13f4458511a38d5621563d03cc161db46fe649c6cfe8b2d31fe99b"},
		"period 1000":         {3543, "7e13c29a43c549c5b15f8caa3e565f3d27d8d8fbc4e332b7d43ad64e4c25f544"},
		"repeat beyond 16KiB": {4858, "87c027727cd81cf8437e4670f93254a6c586cedd6550780f62235b522beef188"},
		"text 49173":          {18245, "3fcb387aea434d9af30e30a6a7eb179999632ef314bf5697720bcb3056aefda7"},
		"text 64 KiB":         {24388, "6fc7b433bcb3048795fa467e73aab56dd7d65ff7358ee0dfc9afe3efaa823eef"},
		"two blocks":          {86869, "6df8432139a63e3c23065908100f47da23def2bb67fbd00e7deeff887c5e350f"},
		"zeros 128 KiB":       {593, "80d6a65e300a0306d27e6ad47baccca9f48818a1c73bf872fdff8807a59124d9"},
	}
	for name, src := range goldenInputs() {
		got, _ := Compress(nil, src)
		sum := fmt.Sprintf("%x", sha256.Sum256(got))
		want, ok := golden[name]
		if !ok {
			t.Errorf("no golden value for %q: %d bytes, %s", name, len(got), sum)
			continue
		}
		if len(got) != want.n || sum != want.sum {
			t.Errorf("%s: Compress gave %d bytes with SHA-256 %s; the kernel gives %d bytes, %s",
				name, len(got), sum, want.n, want.sum)
		}
	}
}

func TestCompressReusesDst(t *testing.T) {
	src := hibernationBlock(20)
	want, _ := Compress(nil, src)

	big := make([]byte, 5, WorstCase(len(src)))
	got, err := Compress(big, src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("Compress into a large dst differs from Compress(nil, src)")
	}
	if &got[0] != &big[:1][0] {
		t.Error("Compress did not reuse a dst of capacity WorstCase(len(src))")
	}

	small := make([]byte, 0, WorstCase(len(src))-1)
	got, err = Compress(small, src)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] == &small[:1][0] {
		t.Error("Compress wrote into a dst smaller than WorstCase(len(src))")
	}
	if !bytes.Equal(got, want) {
		t.Fatal("Compress into a small dst differs from Compress(nil, src)")
	}
}

func TestDecompressReusesDst(t *testing.T) {
	src := hibernationBlock(21)
	c, _ := Compress(nil, src)

	dst := make([]byte, 0, len(src))
	got, err := Decompress(dst, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("Decompress into an exact dst gave different data")
	}
	if &got[0] != &dst[:1][0] {
		t.Error("Decompress did not reuse a dst of the decompressed size")
	}

	// A dst too small is replaced, not an error.
	small := make([]byte, 0, 100)
	got, err = Decompress(small, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("Decompress into a small dst gave different data")
	}
}

func TestDecompressErrors(t *testing.T) {
	valid, _ := Compress(nil, textBytes(30, 10000))
	tests := []struct {
		name   string
		src    []byte
		target error
		msg    string
	}{
		{"empty", nil, golzo.ErrInputOverrun, "output offset 0"},
		{"truncated", valid[:len(valid)/2], golzo.ErrInputOverrun, "output offset"},
		{"no end marker", valid[:len(valid)-3], golzo.ErrInputOverrun, "output offset"},
		{"trailing bytes", concat(valid, []byte{0}), golzo.ErrInputNotConsumed, "output offset 10000"},
		// Literal "ab", then an M2 match 256 bytes back.
		{"lookbehind", []byte{19, 'a', 'b', 0x40, 0x20, 0x11, 0, 0}, golzo.ErrLookbehindOverrun, "output offset 2"},
		{"lzo-rle", []byte{0x11, 0x01, 0x11, 0, 0}, errors.ErrUnsupported, "byte 1 (bitstream version) is 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decompress(nil, tt.src)
			if !errors.Is(err, tt.target) {
				t.Fatalf("Decompress(% x...) error = %v, want %v", tt.src[:min(8, len(tt.src))], err, tt.target)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestDecompressVersionHeader checks that a stream with the kernel's
// version-0 header decodes as the stream without it, as in
// lzo1x_decompress_safe.
func TestDecompressVersionHeader(t *testing.T) {
	src := textBytes(40, 5000)
	c, _ := Compress(nil, src)
	got, err := Decompress(nil, concat([]byte{0x11, 0x00}, c))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("stream with a version-0 header decoded differently")
	}
	kout, rc, _ := kernelDecompress(concat([]byte{0x11, 0x00}, c), len(src))
	if rc != kOK || !bytes.Equal(kout, src) {
		t.Fatalf("kernel reference decoder: code %d", rc)
	}
}

// TestDecompressMaxExpansion decodes a stream that expands as much as
// LZO1X allows, which Decompress must handle without a size hint.
func TestDecompressMaxExpansion(t *testing.T) {
	src := make([]byte, 1<<20)
	src[0] = 1
	c, _ := Compress(nil, src)
	got, err := Decompress(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatal("round trip differs")
	}
	if len(got) > maxExpansion*len(c) {
		t.Fatalf("%d bytes from %d: more than the assumed maximum expansion", len(got), len(c))
	}
}

func TestWorstCase(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{0, 67},
		{1, 68},
		{16, 84},
		{128 << 10, 128<<10 + 8<<10 + 67},
	} {
		if got := WorstCase(tt.n); got != tt.want {
			t.Errorf("WorstCase(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("a"))
	f.Add(make([]byte, 100))
	f.Add(textBytes(50, 3000))
	f.Add(randomBytes(51, 300))
	f.Add(repeatBytes([]byte("abcdefg"), 1000))
	f.Add(hibernationBlock(52)[:20000])
	f.Fuzz(func(t *testing.T, src []byte) {
		checkRoundTrip(t, src)
	})
}

func FuzzDecompress(f *testing.F) {
	f.Add([]byte{0x11, 0, 0})
	f.Add([]byte{0x11, 0, 0x11, 0, 0})
	f.Add([]byte{0x11, 1, 0x11, 0, 0})
	f.Add([]byte{19, 'a', 'b', 0x40, 0x20, 0x11, 0, 0})
	for _, src := range [][]byte{textBytes(60, 2000), make([]byte, 5000), randomBytes(61, 100), hibernationBlock(62)[:12000]} {
		c, _ := Compress(nil, src)
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := Decompress(nil, src)
		if err == nil && len(got) > maxExpansion*len(src) {
			t.Fatalf("%d bytes from %d", len(got), len(src))
		}
		if len(src) >= 5 && src[0] == 17 && src[1] != 0 {
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("lzo-rle stream: error %v, want ErrUnsupported", err)
			}
			return
		}
		// Beyond not panicking, Decompress must accept exactly what the
		// kernel's decoder accepts, and decode it the same way.
		kout, rc, _ := kernelDecompress(src, maxExpansion*len(src))
		if (rc == kOK) != (err == nil) {
			t.Fatalf("kernel reference decoder returns %d, Decompress error %v", rc, err)
		}
		if err == nil && !bytes.Equal(got, kout) {
			t.Fatalf("kernel reference decoder and Decompress disagree: %d vs %d bytes", len(kout), len(got))
		}
	})
}

func BenchmarkCompress(b *testing.B) {
	src := hibernationBlock(70)
	dst := make([]byte, WorstCase(len(src)))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		c, err := Compress(dst, src)
		if err != nil {
			b.Fatal(err)
		}
		n = len(c)
	}
	b.ReportMetric(float64(n)/float64(len(src)), "ratio")
}

func BenchmarkDecompress(b *testing.B) {
	src := hibernationBlock(70)
	c, _ := Compress(nil, src)
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decompress(dst, c); err != nil {
			b.Fatal(err)
		}
	}
}

// The audit's finding: a block larger than the kernel's 128 KiB was
// accepted. DecompressMax refuses what exceeds its bound, even when dst
// could be grown.
func TestDecompressMax(t *testing.T) {
	src := make([]byte, 256<<10)
	for i := range src {
		src[i] = byte(i * 7 / 4096)
	}
	c, err := Compress(nil, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		max int
		ok  bool
	}{{256 << 10, true}, {300 << 10, true}, {128 << 10, false}, {256<<10 - 1, false}} {
		out, err := DecompressMax(make([]byte, 0, 128<<10), c, tc.max)
		if tc.ok != (err == nil) {
			t.Errorf("max %d: %v", tc.max, err)
			continue
		}
		if tc.ok && !bytes.Equal(out, src) {
			t.Errorf("max %d: wrong output", tc.max)
		}
		if !tc.ok && !strings.Contains(err.Error(), "more than") {
			t.Errorf("max %d: error %q does not name the bound", tc.max, err)
		}
	}
}
