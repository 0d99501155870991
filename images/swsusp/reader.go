package swsusp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// mapEntries is MAP_PAGE_ENTRIES: sector_t entries per swap_map page, the
// last slot holding the next map page.
const mapEntries = PageSize/8 - 1

// ErrNoImage is returned by NewReader for a swap area without the S1SUSPEND
// signature.
var ErrNoImage = errors.New("no hibernation image")

// Reader reads a hibernation image from a swap area, as a resuming kernel
// does (kernel/power/swap.c: swsusp_check, swsusp_read).
type Reader struct {
	dev        io.ReaderAt
	devPages   int64
	headerPage int64
	Header     Header
	Area       SwapArea
}

// NewReader opens the image whose swap header lies at page headerPage (the
// kernel's resume_offset) of dev, a device or file of size bytes.
func NewReader(dev io.ReaderAt, size int64, headerPage int64) (*Reader, error) {
	r := &Reader{dev: dev, devPages: size / PageSize, headerPage: headerPage}
	if headerPage < 0 || headerPage >= r.devPages {
		return nil, fmt.Errorf("swsusp: swap header page %d beyond device end (%d pages)", headerPage, r.devPages)
	}
	page := make([]byte, PageSize)
	if _, err := dev.ReadAt(page, headerPage*PageSize); err != nil {
		return nil, fmt.Errorf("swsusp: swap header at page %d: %w", headerPage, err)
	}
	r.Header = ParseHeader(page)
	r.Area = ParseSwapArea(page)
	if r.Header.Sig != SigHibernate {
		return r, fmt.Errorf("swsusp: swap header at page %d: signature %q: %w", headerPage, r.Header.Sig, ErrNoImage)
	}
	if r.Header.OrigSig != SigSwap2 && r.Header.OrigSig != SigSwap1 {
		return r, fmt.Errorf("swsusp: swap header at page %d: orig_sig %q is not a swap signature", headerPage, r.Header.OrigSig)
	}
	if err := r.checkPointer("swap header", headerPage, "image", r.Header.Image); err != nil {
		return r, err
	}
	return r, nil
}

func (r *Reader) checkPointer(what string, at int64, field string, p uint64) error {
	switch {
	case p == 0:
		return fmt.Errorf("swsusp: %s at page %d: %s pointer is 0", what, at, field)
	case int64(p) >= r.devPages || int64(p) < 0:
		return fmt.Errorf("swsusp: %s at page %d: %s pointer %d beyond device end (%d pages)", what, at, field, p, r.devPages)
	case int64(p) == r.headerPage:
		return fmt.Errorf("swsusp: %s at page %d: %s pointer %d is the swap header", what, at, field, p)
	}
	return nil
}

// pageWalker follows the swap_map chain and reads image pages in order,
// coalescing pages that lie next to each other on the device.
type pageWalker struct {
	r       *Reader
	mapAt   int64
	entries []uint64
	next    uint64
	k       int
	used    []uint64 // bitmap of device pages the image uses: 2 MiB per 64 GiB
	nread   int64    // image pages read
	maps    int      // map pages read
	page    []byte
}

func (r *Reader) walker() *pageWalker {
	return &pageWalker{r: r, next: r.Header.Image, used: make([]uint64, (r.devPages+63)/64), page: make([]byte, PageSize), entries: make([]uint64, mapEntries)}
}

func (w *pageWalker) claim(what string, at int64, field string, p uint64) error {
	if err := w.r.checkPointer(what, at, field, p); err != nil {
		return err
	}
	if w.used[p/64]&(1<<(p%64)) != 0 {
		return fmt.Errorf("swsusp: %s at page %d: %s pointer %d names a page already used by the image", what, at, field, p)
	}
	w.used[p/64] |= 1 << (p % 64)
	return nil
}

func (w *pageWalker) loadMap() error {
	if w.next == 0 {
		return fmt.Errorf("swsusp: swap_map page at page %d: next pointer is 0 but the image needs more pages (%d read)", w.mapAt, w.nread)
	}
	field, at, what := "next", w.mapAt, "swap_map page"
	if w.maps == 0 {
		field, at, what = "image", w.r.headerPage, "swap header"
	}
	if err := w.claim(what, at, field, w.next); err != nil {
		return err
	}
	w.mapAt = int64(w.next)
	if _, err := w.r.dev.ReadAt(w.page, w.mapAt*PageSize); err != nil {
		return fmt.Errorf("swsusp: swap_map page at page %d: %w", w.mapAt, err)
	}
	for i := range w.entries {
		w.entries[i] = binary.LittleEndian.Uint64(w.page[i*8:])
	}
	w.next = binary.LittleEndian.Uint64(w.page[mapEntries*8:])
	w.k = 0
	w.maps++
	return nil
}

// read fills buf (a whole number of pages) with the next image pages.
func (w *pageWalker) read(buf []byte) error {
	for len(buf) > 0 {
		if w.maps == 0 || w.k == mapEntries {
			if err := w.loadMap(); err != nil {
				return err
			}
		}
		first := w.entries[w.k]
		if first == 0 {
			return fmt.Errorf("swsusp: swap_map page at page %d: entry %d is empty but the image needs more pages (%d read)", w.mapAt, w.k, w.nread)
		}
		// a run of consecutive device pages within this map page
		n := 0
		for n < len(buf)/PageSize && w.k+n < mapEntries && w.entries[w.k+n] == first+uint64(n) {
			if err := w.claim("swap_map page", w.mapAt, fmt.Sprintf("entry %d", w.k+n), first+uint64(n)); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			if err := w.claim("swap_map page", w.mapAt, fmt.Sprintf("entry %d", w.k), first); err != nil {
				return err
			}
			n = 1
		}
		if _, err := w.r.dev.ReadAt(buf[:n*PageSize], int64(first)*PageSize); err != nil {
			return fmt.Errorf("swsusp: image page at page %d (swap_map page %d entry %d): %w", first, w.mapAt, w.k, err)
		}
		buf = buf[n*PageSize:]
		w.k += n
		w.nread += int64(n)
	}
	return nil
}

// ReadInfo reads the image's first page, the swsusp_info with the x86 arch
// record, without reading the rest.
func (r *Reader) ReadInfo() (Info, error) {
	page := make([]byte, PageSize)
	if err := r.walker().read(page); err != nil {
		return Info{}, err
	}
	in, err := ParseInfo(page)
	if err != nil {
		return in, fmt.Errorf("%w (image page 0)", err)
	}
	return in, nil
}

// Stream returns the image as a snapshot stream: the swsusp_info page, the
// metadata pages and the data pages, decompressed. The CRC32 the header
// carries is checked when the last page has been read; a mismatch is returned
// instead of io.EOF.
func (r *Reader) Stream() io.Reader {
	return &streamOut{w: r.walker(), r: r, comp: r.Header.Compression()}
}

type streamOut struct {
	r       *Reader
	w       *pageWalker
	comp    Compression
	started bool
	remain  uint64 // stream pages still to deliver after the info page
	pending []byte
	cmp     []byte
	unc     []byte
	crc     uint32
	blocks  int
	err     error
}

func (s *streamOut) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.err = s.fill()
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *streamOut) fill() error {
	if !s.started {
		s.started = true
		s.unc = make([]byte, blockSize)
		info := s.unc[:PageSize]
		if err := s.w.read(info); err != nil {
			return err
		}
		in, err := ParseInfo(info)
		if err != nil {
			return fmt.Errorf("%w (image page 0)", err)
		}
		s.remain = in.Pages - 1
		s.pending = info
		return nil
	}
	if s.remain == 0 {
		if s.r.Header.Flags&FlagCRC32 != 0 && s.comp != CompressNone && s.crc != s.r.Header.CRC32 {
			return fmt.Errorf("swsusp: crc32 of the uncompressed stream is %#08x, the swap header says %#08x: the image is corrupt", s.crc, s.r.Header.CRC32)
		}
		return io.EOF
	}
	if s.comp == CompressNone {
		n := min(s.remain, blockPages)
		buf := s.unc[:n*PageSize]
		if err := s.w.read(buf); err != nil {
			return err
		}
		s.remain -= n
		s.pending = buf
		return nil
	}
	if s.cmp == nil {
		s.cmp = make([]byte, ((maxCompressed+blockHeader)/PageSize+1)*PageSize)
	}
	at := s.w.nread
	if err := s.w.read(s.cmp[:PageSize]); err != nil {
		return err
	}
	clen := binary.LittleEndian.Uint64(s.cmp)
	if clen == 0 || clen > maxCompressed {
		return fmt.Errorf("swsusp: %s block %d (image page %d): compressed length %d outside 1..%d", s.comp, s.blocks, at, clen, maxCompressed)
	}
	need := (clen + blockHeader + PageSize - 1) / PageSize
	if need > 1 {
		if err := s.w.read(s.cmp[PageSize : need*PageSize]); err != nil {
			return err
		}
	}
	out, err := decompressBlock(s.comp, s.unc, s.cmp[blockHeader:blockHeader+clen])
	if err != nil {
		return fmt.Errorf("swsusp: %s block %d (image page %d): %w", s.comp, s.blocks, at, err)
	}
	if len(out) == 0 || len(out)%PageSize != 0 || uint64(len(out)/PageSize) > s.remain {
		return fmt.Errorf("swsusp: %s block %d (image page %d): decompressed to %d bytes; want whole pages, at most the %d still due", s.comp, s.blocks, at, len(out), s.remain)
	}
	s.blocks++
	s.crc = crc32le(s.crc, out)
	s.remain -= uint64(len(out) / PageSize)
	s.pending = out
	return nil
}
