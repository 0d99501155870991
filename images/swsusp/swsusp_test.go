package swsusp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/thawlinux/thaw/images/lzo"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthStream builds a snapshot stream like a 6.12 kernel's: n PFNs from
// base with gaps, every zeroEvery-th page all zeros (flagged, when zeroEvery
// > 0), data pages half random and half repetitive, one carrying a banner.
func synthStream(t testing.TB, n int, zeroEvery int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var pfns []uint64
	pfn := uint64(0x100)
	for len(pfns) < n {
		if rng.IntN(50) == 0 {
			pfn += uint64(rng.IntN(300))
		}
		pfns = append(pfns, pfn)
		pfn++
	}
	var data [][]byte
	enc := make([]uint64, n)
	for i, p := range pfns {
		enc[i] = p
		if zeroEvery > 0 && i%zeroEvery == zeroEvery-1 {
			enc[i] |= pfnZeroFlag
			continue
		}
		pg := make([]byte, PageSize)
		if i%2 == 0 {
			for j := range pg {
				pg[j] = byte(rng.Uint32())
			}
		} else {
			copy(pg, strings.Repeat(string(rune('a'+i%26)), PageSize))
		}
		data = append(data, pg)
	}
	copy(data[len(data)/2][100:], "Linux version 6.12.0-99+deb13-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0, GNU ld (GNU Binutils for Debian) 2.44) # SMP PREEMPT_DYNAMIC Debian 6.12.99-1 (2026-01-02)\n\x00")
	meta := (n*8 + PageSize - 1) / PageSize
	info := make([]byte, PageSize)
	le := binary.LittleEndian
	le.PutUint64(info[24:], RestoreMagic)
	le.PutUint64(info[32:], 0x1234)
	le.PutUint64(info[offNumPhysPages:], uint64(n*2))
	le.PutUint64(info[offImagePages:], uint64(len(data)))
	le.PutUint64(info[offPages:], uint64(1+meta+len(data)))
	le.PutUint64(info[offSize:], uint64(1+meta+len(data))*PageSize)
	var out bytes.Buffer
	out.Write(info)
	mb := make([]byte, meta*PageSize)
	for i, v := range enc {
		le.PutUint64(mb[i*8:], v)
	}
	if n*8 < len(mb) {
		le.PutUint64(mb[n*8:], pfnEnd)
	}
	out.Write(mb)
	for _, d := range data {
		out.Write(d)
	}
	return out.Bytes()
}

func newArea(t testing.TB, pages uint32, headerPage int64) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "swap.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate((headerPage + int64(pages)) * PageSize); err != nil {
		t.Fatal(err)
	}
	if err := FormatSwap(f, headerPage, pages, [16]byte{1, 2, 3}, "swaplabel"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func size(t testing.TB, f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func writeImage(t testing.TB, f *os.File, headerPage int64, c Compression, stream []byte) WriteResult {
	w, err := NewWriter(f, size(t, f), headerPage, WriterOptions{Compression: c})
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.WriteStream(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, zero    int
		c          Compression
		headerPage int64
	}{
		{"lzo-6.12", 3000, 7, CompressLZO, 0},
		{"lzo-6.1", 1500, 0, CompressLZO, 0},
		{"none-6.12", 1200, 5, CompressNone, 0},
		{"lz4", 2000, 3, CompressLZ4, 0},
		{"lzo-offset", 700, 4, CompressLZO, 4096},
		{"none-one-map-page-exactly", 511 - 2, 0, CompressNone, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := synthStream(t, tc.n, tc.zero, 7)
			f := newArea(t, 8192, tc.headerPage)
			res := writeImage(t, f, tc.headerPage, tc.c, stream)
			r, err := NewReader(f, size(t, f), tc.headerPage)
			if err != nil {
				t.Fatal(err)
			}
			if r.Area.Label != "swaplabel" || r.Area.UUID[1] != 2 {
				t.Errorf("swap label/UUID not kept: %+v", r.Area)
			}
			got, err := io.ReadAll(r.Stream())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, stream) {
				t.Fatalf("stream differs after the round trip (%d vs %d bytes)", len(got), len(stream))
			}
			rep, err := r.Verify()
			if err != nil {
				t.Fatal(err)
			}
			wantZero := 0
			if tc.zero > 0 {
				wantZero = tc.n / tc.zero
			}
			if rep.PFNs != uint64(tc.n) || rep.ZeroPages != uint64(wantZero) || rep.DataPages != uint64(tc.n-wantZero) {
				t.Errorf("counts: %d PFNs %d zero %d data, want %d %d %d", rep.PFNs, rep.ZeroPages, rep.DataPages, tc.n, wantZero, tc.n-wantZero)
			}
			if rep.Release != "6.12.0-99+deb13-amd64" || rep.VersionCode != 6<<16|12<<8|99 {
				t.Errorf("release %q code %#x", rep.Release, rep.VersionCode)
			}
			if rep.SwapPages != res.SwapPages {
				t.Errorf("reader counts %d swap pages, writer wrote %d", rep.SwapPages, res.SwapPages)
			}
			if tc.c != CompressNone && (!rep.CRC32Checked || rep.CRC32 != r.Header.CRC32) {
				t.Errorf("crc not checked: %+v", rep)
			}
			if tc.c == CompressNone && rep.CRC32Checked {
				t.Error("uncompressed image claims a crc")
			}
		})
	}
}

// flip corrupts one byte of the image page the predicate picks.
func imagePages(t *testing.T, f *os.File, h Header) (maps []int64, entries []int64) {
	next := int64(h.Image)
	page := make([]byte, PageSize)
	for next != 0 {
		maps = append(maps, next)
		if _, err := f.ReadAt(page, next*PageSize); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < mapEntries; i++ {
			if e := binary.LittleEndian.Uint64(page[i*8:]); e != 0 {
				entries = append(entries, int64(e))
			}
		}
		next = int64(binary.LittleEndian.Uint64(page[mapEntries*8:]))
	}
	return maps, entries
}

func flipByte(t *testing.T, f *os.File, off int64) {
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruption(t *testing.T) {
	stream := synthStream(t, 2500, 6, 3)
	meta := (2500*8 + PageSize - 1) / PageSize
	for _, tc := range []struct {
		name string
		c    Compression
		// corrupt damages the file; want is a substring of the error
		corrupt func(t *testing.T, f *os.File, maps, entries []int64)
		want    string
	}{
		{"lzo-data-page", CompressLZO, func(t *testing.T, f *os.File, _, e []int64) { flipByte(t, f, e[len(e)-3]*PageSize+1000) }, "crc32 of the uncompressed stream"},
		{"lzo-metadata", CompressLZO, func(t *testing.T, f *os.File, _, e []int64) { flipByte(t, f, e[1]*PageSize+100) }, "lzo block"},
		{"lzo-map-next", CompressLZO, func(t *testing.T, f *os.File, m, _ []int64) { flipByte(t, f, m[0]*PageSize+mapEntries*8+3) }, "next pointer"},
		{"lzo-map-entry", CompressLZO, func(t *testing.T, f *os.File, m, _ []int64) { flipByte(t, f, m[0]*PageSize+40*8+2) }, "swap_map page at page"},
		{"none-metadata-order", CompressNone, func(t *testing.T, f *os.File, _, e []int64) { flipByte(t, f, e[1]*PageSize+8*200+1) }, "metadata page 0 entry"},
		{"none-map-entry", CompressNone, func(t *testing.T, f *os.File, m, _ []int64) { flipByte(t, f, m[0]*PageSize+8*9+4) }, "beyond device end"},
		{"truncated", CompressLZO, func(t *testing.T, f *os.File, _, e []int64) {
			if err := f.Truncate(e[len(e)/2] * PageSize); err != nil {
				t.Fatal(err)
			}
		}, "beyond device end"},
		{"lzo-crc", CompressLZO, func(t *testing.T, f *os.File, _, _ []int64) {
			page := make([]byte, PageSize)
			f.ReadAt(page, 0)
			h := ParseHeader(page)
			h.CRC32 ^= 1
			h.Put(page)
			f.WriteAt(page, 0)
		}, "crc32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newArea(t, 8192, 0)
			writeImage(t, f, 0, tc.c, stream)
			r, err := NewReader(f, size(t, f), 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Verify(); err != nil {
				t.Fatalf("clean image: %v", err)
			}
			maps, entries := imagePages(t, f, r.Header)
			if len(entries) < meta+10 {
				t.Fatalf("only %d entries", len(entries))
			}
			tc.corrupt(t, f, maps, entries)
			r, err = NewReader(f, size(t, f), 0)
			if err == nil {
				_, err = r.Verify()
			}
			if err == nil {
				t.Fatal("corruption not detected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

func TestWriterRefuses(t *testing.T) {
	stream := synthStream(t, 3000, 0, 1)
	f := newArea(t, 1000, 0)
	w, err := NewWriter(f, size(t, f), 0, WriterOptions{Compression: CompressNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteStream(bytes.NewReader(stream)); err == nil || !strings.Contains(err.Error(), "holds") {
		t.Fatalf("too small area: %v", err)
	}
	// an area that is too small for a compressed image fails without a signature
	w, _ = NewWriter(f, size(t, f), 0, WriterOptions{Compression: CompressLZO})
	if _, err := w.WriteStream(bytes.NewReader(stream)); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("too small area (lzo): %v", err)
	}
	if _, err := NewReader(f, size(t, f), 0); !errors.Is(err, ErrNoImage) {
		t.Fatalf("a failed write left a signature: %v", err)
	}
	// truncated stream
	w, _ = NewWriter(f, size(t, f), 0, WriterOptions{Compression: CompressLZO})
	if _, err := w.WriteStream(bytes.NewReader(stream[:PageSize*3])); err == nil {
		t.Fatal("truncated stream accepted")
	}
	// no swap signature
	g, _ := os.Create(filepath.Join(t.TempDir(), "blank"))
	g.Truncate(1 << 20)
	if _, err := NewWriter(g, 1<<20, 0, WriterOptions{}); err == nil || !strings.Contains(err.Error(), "mkswap") {
		t.Fatalf("blank device: %v", err)
	}
}

// TestInterruptedRewriteLeavesNoImage: writing over an area that holds an
// image clears its signature before anything else, so a write that fails
// half-way leaves no resumable image, old or new.
func TestInterruptedRewriteLeavesNoImage(t *testing.T) {
	stream := synthStream(t, 2000, 5, 11)
	f := newArea(t, 8192, 0)
	writeImage(t, f, 0, CompressLZO, stream)
	if _, err := NewReader(f, size(t, f), 0); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, size(t, f), 0, WriterOptions{Compression: CompressNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteStream(io.MultiReader(bytes.NewReader(stream[:len(stream)/2]), errReader{})); err == nil {
		t.Fatal("a failing stream was written")
	}
	r, err := NewReader(f, size(t, f), 0)
	if !errors.Is(err, ErrNoImage) {
		t.Fatalf("after an interrupted write: %v", err)
	}
	if r.Area.Label != "swaplabel" || r.Header.Sig != SigSwap2 {
		t.Fatalf("swap area not restored: %+v %+v", r.Area, r.Header)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestE820ChecksumKernel: the BIOS-e820 map a Debian 13 kernel printed in a
// 256 MiB QEMU guest (SeaBIOS, one virtio disk) and the e820_checksum that
// kernel wrote into its image's arch header.
func TestE820ChecksumKernel(t *testing.T) {
	table := []E820Entry{
		{0x0, 0x9fc00, 1}, {0x9fc00, 0x400, 2}, {0xf0000, 0x10000, 2},
		{0x100000, 0xffdd000 - 0x100000, 1}, {0xffdd000, 0x10000000 - 0xffdd000, 2},
		{0xfffc0000, 0x40000, 2}, {0xfd00000000, 0x300000000, 2},
	}
	if got := E820Checksum(table); got != 0xba571fd2 {
		t.Fatalf("E820Checksum = %#08x, the kernel wrote 0xba571fd2", got)
	}
}

func TestE820Checksum(t *testing.T) {
	// A table of one entry, checked against hash/crc32 by construction of
	// the packed bytes: nr_entries=1, addr=0, size=0x9fc00, type=1.
	table := []E820Entry{{0, 0x9fc00, 1}}
	if E820Checksum(table) == E820Checksum([]E820Entry{{0, 0x9fc00, 2}}) {
		t.Fatal("checksum ignores the type")
	}
	// crc32_le(0, "123456789") as the kernel computes it (lib/crc32.c).
	if got := crc32le(0, []byte("123456789")); got != 0x2DFD2D88 {
		t.Fatalf("crc32le(0, 123456789) = %#x, want 0x2dfd2d88", got)
	}
	if crc32le(0, make([]byte, 4096)) != 0 {
		t.Fatal("crc32_le of zeros from seed 0 must stay 0")
	}
}

func TestVersionCode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{{"6.12.48+deb13-amd64", 0x060c30}, {"6.1.0-50-cloud-amd64", 0x060100}, {"6.1.300", 0x0601ff}, {"x", 0}} {
		if got := VersionCode(tc.in); got != tc.want {
			t.Errorf("VersionCode(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func FuzzReader(f *testing.F) {
	stream := synthStream(f, 40, 5, 9)
	for _, c := range []Compression{CompressLZO, CompressNone, CompressLZ4} {
		dir := f.TempDir()
		g, _ := os.Create(filepath.Join(dir, "a"))
		g.Truncate(64 * PageSize)
		FormatSwap(g, 0, 64, [16]byte{}, "")
		w, _ := NewWriter(g, 64*PageSize, 0, WriterOptions{Compression: c})
		if _, err := w.WriteStream(bytes.NewReader(stream)); err != nil {
			f.Fatal(err)
		}
		img, _ := os.ReadFile(g.Name())
		// keep the seed small: the used prefix of the area
		used := int64(0)
		r, _ := NewReader(bytes.NewReader(img), int64(len(img)), 0)
		rep, _ := r.Verify()
		used = (rep.SwapPages + 2) * PageSize
		f.Add(img[:used])
		g.Close()
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		r, err := NewReader(bytes.NewReader(img), int64(len(img)), 0)
		if err != nil {
			return
		}
		r.Verify()
		io.Copy(io.Discard, r.Stream())
	})
}

func FuzzStreamReader(f *testing.F) {
	f.Add(synthStream(f, 30, 4, 2))
	f.Add(synthStream(f, 513, 0, 3)[:3*PageSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := NewStreamReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for {
			if _, err := s.Next(); err != nil {
				break
			}
		}
	})
}

// BenchmarkWrite and BenchmarkRead measure the stream ⇄ swap area paths per
// compression on a 6.12-like stream (random, repetitive and zero pages).
func BenchmarkWrite(b *testing.B) {
	stream := synthStream(b, 8000, 6, 5)
	for _, c := range []Compression{CompressNone, CompressLZO, CompressLZ4} {
		b.Run(string(c), func(b *testing.B) {
			f := newArea(b, 16384, 0)
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				w, err := NewWriter(f, size(b, f), 0, WriterOptions{Compression: c})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.WriteStream(bytes.NewReader(stream)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRead(b *testing.B) {
	stream := synthStream(b, 8000, 6, 5)
	for _, c := range []Compression{CompressNone, CompressLZO, CompressLZ4} {
		b.Run(string(c), func(b *testing.B) {
			f := newArea(b, 16384, 0)
			writeImage(b, f, 0, c, stream)
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				r, err := NewReader(f, size(b, f), 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r.Stream()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The audit's reproduction: an image whose CRC does not match was copied
// and signed. The source's error at the end of its stream must stop the
// writer before the signature.
func TestWriteStreamReturnsSourceError(t *testing.T) {
	src := newArea(t, 4000, 0)
	writeImage(t, src, 0, CompressLZO, synthStream(t, 1500, 0, 1))
	page := make([]byte, PageSize)
	src.ReadAt(page, 0)
	h := ParseHeader(page)
	h.CRC32 ^= 1
	h.Put(page)
	src.WriteAt(page, 0)
	r, err := NewReader(src, size(t, src), 0)
	if err != nil {
		t.Fatal(err)
	}
	dst := newArea(t, 4000, 0)
	w, err := NewWriter(dst, size(t, dst), 0, WriterOptions{Compression: CompressNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteStream(r.Stream()); err == nil || !strings.Contains(err.Error(), "crc32") {
		t.Fatalf("WriteStream of a stream whose CRC fails: %v, want the CRC error", err)
	}
	if _, err := NewReader(dst, size(t, dst), 0); !errors.Is(err, ErrNoImage) {
		t.Fatalf("the copy of a corrupt image is signed: %v", err)
	}
}

// A compressed block that expands past the kernel's UNC_SIZE (128 KiB) is
// refused, as the kernel refuses it: inspect must not call it resumable.
func TestBlockLargerThanKernelsRefused(t *testing.T) {
	big := make([]byte, 2*blockSize)
	for i := range big {
		big[i] = byte(i / PageSize)
	}
	c, err := lzo.Compress(nil, big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decompressBlock(CompressLZO, make([]byte, blockSize), c); err == nil {
		t.Fatal("a 256 KiB LZO block was accepted")
	}
	c, _ = lzo.Compress(nil, big[:blockSize])
	if out, err := decompressBlock(CompressLZO, make([]byte, blockSize), c); err != nil || len(out) != blockSize {
		t.Fatalf("a 128 KiB block: %d bytes, %v", len(out), err)
	}
}
