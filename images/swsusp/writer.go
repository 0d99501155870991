package swsusp

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// Device is what the Writer writes to: a block device or a file.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// WriterOptions choose how the image is stored.
type WriterOptions struct {
	Compression Compression
	// Flags carried over from the image's original header (SF_PLATFORM_MODE,
	// SF_HW_SIG with HWSig); the compression flags are set by the Writer.
	Flags uint32
	HWSig uint32
	// Progress, if set, is called after every block with the stream pages
	// written so far and the total.
	Progress func(done, total uint64)
	// Free, if set, are the only pages the image may use, in this order,
	// counted from the header page: the slots reserved in a swap that is
	// in use. Without it every page of the area after the header is free.
	Free []Extent
}

// Extent is a run of Count pages from page Start.
type Extent struct{ Start, Count uint64 }

// Writer stores a snapshot stream in a swap area in the kernel's format.
type Writer struct {
	dev        Device
	headerPage int64
	area       SwapArea
	opts       WriterOptions
	orig       []byte // the area's first page as found
	origSig    string
	next       int64 // next free page, relative to the area
	bad        map[int64]bool
	free       []Extent // what is left of opts.Free

	mapPage []byte
	mapAt   int64
	k       int
	first   int64

	runStart int64
	run      []byte
	written  int64 // image pages written, map pages included
	lz4c     lz4.Compressor
}

// WriteResult tells what was written.
type WriteResult struct {
	Header     Header
	Pages      uint64 // stream pages
	SwapPages  int64  // swap pages used, swap_map pages included
	Blocks     int
	HeaderPage int64
}

// NewWriter prepares to write an image into the swap area whose header lies
// at page headerPage of dev. The area must hold a swap signature (mkswap) or
// an earlier image; its label, UUID and size are kept.
func NewWriter(dev Device, size int64, headerPage int64, opts WriterOptions) (*Writer, error) {
	if opts.Compression == "" {
		opts.Compression = CompressLZO
	}
	if _, err := ParseCompression(string(opts.Compression)); err != nil {
		return nil, err
	}
	w := &Writer{dev: dev, headerPage: headerPage, opts: opts, bad: map[int64]bool{}}
	devPages := size / PageSize
	if headerPage < 0 || headerPage >= devPages {
		return nil, fmt.Errorf("swsusp: swap header page %d beyond device end (%d pages)", headerPage, devPages)
	}
	w.orig = make([]byte, PageSize)
	if _, err := dev.ReadAt(w.orig, headerPage*PageSize); err != nil {
		return nil, fmt.Errorf("swsusp: swap header at page %d: %w", headerPage, err)
	}
	h := ParseHeader(w.orig)
	switch h.Sig {
	case SigSwap2, SigSwap1:
		w.origSig = h.Sig
	case SigHibernate:
		w.origSig = h.OrigSig
	default:
		return nil, fmt.Errorf("swsusp: page %d holds no swap area (signature %q): run mkswap on it first", headerPage, h.Sig)
	}
	w.area = ParseSwapArea(w.orig)
	if w.area.LastPage == 0 {
		return nil, fmt.Errorf("swsusp: swap area at page %d: last_page is 0", headerPage)
	}
	if end := headerPage + int64(w.area.LastPage) + 1; end > devPages {
		return nil, fmt.Errorf("swsusp: swap area at page %d claims %d pages but the device ends after %d", headerPage, w.area.LastPage+1, devPages-headerPage)
	}
	for _, b := range w.area.BadPages {
		w.bad[int64(b)] = true
	}
	w.next = 1
	for _, e := range opts.Free {
		if e.Start == 0 || e.Count == 0 || e.Start+e.Count-1 > uint64(w.area.LastPage) {
			return nil, fmt.Errorf("swsusp: free pages %d+%d: outside the swap area's pages 1..%d", e.Start, e.Count, w.area.LastPage)
		}
	}
	w.free = append([]Extent(nil), opts.Free...)
	return w, nil
}

// Capacity is the number of pages the area can hold besides its header.
func (w *Writer) Capacity() int64 {
	if w.opts.Free != nil {
		var n int64
		for _, e := range w.opts.Free {
			n += int64(e.Count)
		}
		return n
	}
	return int64(w.area.LastPage) - int64(len(w.bad))
}

// NeedPages is the worst case of swap pages a stream of pages pages needs in
// the given compression, swap_map pages included.
func NeedPages(pages uint64, c Compression) int64 {
	data := int64(pages)
	if c != CompressNone && pages > 1 {
		blocks := (int64(pages) - 1 + blockPages - 1) / blockPages
		perBlock := int64((maxCompressed + blockHeader + PageSize - 1) / PageSize)
		data = 1 + blocks*perBlock
	}
	return data + (data+mapEntries-1)/mapEntries + 1
}

func (w *Writer) alloc() (int64, error) {
	if w.opts.Free != nil {
		for len(w.free) > 0 && (w.free[0].Count == 0 || w.bad[int64(w.free[0].Start)]) {
			if w.free[0].Count > 0 {
				w.free[0].Start++
				w.free[0].Count--
				continue
			}
			w.free = w.free[1:]
		}
		if len(w.free) == 0 {
			return 0, fmt.Errorf("swsusp: the %d free pages (%d MiB) reserved in the swap area at page %d are used up after %d pages: the image does not fit; nothing resumable was written", w.Capacity(), w.Capacity()*PageSize>>20, w.headerPage, w.written)
		}
		p := w.headerPage + int64(w.free[0].Start)
		w.free[0].Start++
		w.free[0].Count--
		w.written++
		return p, nil
	}
	for w.bad[w.next] {
		w.next++
	}
	if w.next > int64(w.area.LastPage) {
		return 0, fmt.Errorf("swsusp: swap area at page %d is full after %d pages (%d MiB): the image does not fit; nothing resumable was written", w.headerPage, w.written, w.written*PageSize>>20)
	}
	p := w.headerPage + w.next
	w.next++
	w.written++
	return p, nil
}

func (w *Writer) flushRun() error {
	if len(w.run) == 0 {
		return nil
	}
	if _, err := w.dev.WriteAt(w.run, w.runStart*PageSize); err != nil {
		return fmt.Errorf("swsusp: write %d pages at page %d: %w", len(w.run)/PageSize, w.runStart, err)
	}
	w.run = w.run[:0]
	return nil
}

func (w *Writer) writePage(data []byte) error {
	if w.mapPage == nil {
		w.mapPage = make([]byte, PageSize)
		at, err := w.alloc()
		if err != nil {
			return err
		}
		w.mapAt, w.first = at, at
	}
	at, err := w.alloc()
	if err != nil {
		return err
	}
	if len(w.run) > 0 && (at != w.runStart+int64(len(w.run)/PageSize) || len(w.run) >= 4<<20) {
		if err := w.flushRun(); err != nil {
			return err
		}
	}
	if len(w.run) == 0 {
		w.runStart = at
	}
	w.run = append(w.run, data[:PageSize]...)
	binary.LittleEndian.PutUint64(w.mapPage[w.k*8:], uint64(at))
	w.k++
	if w.k == mapEntries {
		next, err := w.alloc()
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(w.mapPage[mapEntries*8:], uint64(next))
		if _, err := w.dev.WriteAt(w.mapPage, w.mapAt*PageSize); err != nil {
			return fmt.Errorf("swsusp: write swap_map page at page %d: %w", w.mapAt, err)
		}
		clear(w.mapPage)
		w.mapAt, w.k = next, 0
	}
	return nil
}

// WriteStream reads a whole snapshot stream from r and stores it. The area's
// signature is first set back to its swap signature, so that an interrupted
// write never leaves a resumable image; S1SUSPEND is written last, after
// everything else is on stable storage.
func (w *Writer) WriteStream(r io.Reader) (WriteResult, error) {
	res := WriteResult{HeaderPage: w.headerPage}
	info := make([]byte, PageSize)
	if _, err := io.ReadFull(r, info); err != nil {
		return res, fmt.Errorf("swsusp: stream header page: %w", unexpected(err))
	}
	in, err := ParseInfo(info)
	if err != nil {
		return res, err
	}
	if need := NeedPages(in.Pages, CompressNone); w.opts.Compression == CompressNone && need > w.Capacity() {
		return res, fmt.Errorf("swsusp: the image needs %d pages (%d MiB) but the swap area at page %d holds %d pages (%d MiB)",
			need, need*PageSize>>20, w.headerPage, w.Capacity(), w.Capacity()*PageSize>>20)
	}
	// Invalidate any earlier image before touching its pages.
	if ParseHeader(w.orig).Sig == SigHibernate {
		page := append([]byte(nil), w.orig...)
		h := ParseHeader(page)
		h.Sig, h.OrigSig, h.Image, h.Flags, h.CRC32 = w.origSig, "", 0, 0, 0
		h.Put(page)
		if _, err := w.dev.WriteAt(page, w.headerPage*PageSize); err != nil {
			return res, fmt.Errorf("swsusp: clear old image signature at page %d: %w", w.headerPage, err)
		}
		if err := w.dev.Sync(); err != nil {
			return res, fmt.Errorf("swsusp: sync: %w", err)
		}
	}
	if err := w.writePage(info); err != nil {
		return res, err
	}
	total := in.Pages
	remain := in.Pages - 1
	unc := make([]byte, blockSize)
	var cmp []byte
	var crc uint32
	comp := w.opts.Compression
	for remain > 0 {
		n := min(remain, blockPages)
		buf := unc[:n*PageSize]
		if _, err := io.ReadFull(r, buf); err != nil {
			return res, fmt.Errorf("swsusp: stream page %d of %d: %w", total-remain, total, unexpected(err))
		}
		remain -= n
		if comp == CompressNone {
			for off := 0; off < len(buf); off += PageSize {
				if err := w.writePage(buf[off:]); err != nil {
					return res, err
				}
			}
		} else {
			crc = crc32le(crc, buf)
			if cmp == nil {
				cmp = make([]byte, ((maxCompressed+blockHeader)/PageSize+1)*PageSize)
			}
			out, err := compressBlock(comp, &w.lz4c, cmp[blockHeader:blockHeader], buf)
			if err != nil {
				return res, fmt.Errorf("swsusp: %s block %d: %w", comp, res.Blocks, err)
			}
			if len(out) > len(cmp)-blockHeader {
				return res, fmt.Errorf("swsusp: %s block %d: %d compressed bytes exceed the kernel's bound", comp, res.Blocks, len(out))
			}
			if len(out) > 0 && &out[0] != &cmp[blockHeader] {
				copy(cmp[blockHeader:], out)
			}
			binary.LittleEndian.PutUint64(cmp, uint64(len(out)))
			end := blockHeader + len(out)
			padded := (end + PageSize - 1) / PageSize * PageSize
			clear(cmp[end:padded])
			for off := 0; off < padded; off += PageSize {
				if err := w.writePage(cmp[off:]); err != nil {
					return res, err
				}
			}
		}
		res.Blocks++
		if w.opts.Progress != nil {
			w.opts.Progress(total-remain, total)
		}
	}
	// The source's last word: a verifying reader reports a bad CRC only
	// at its end, and that must stop the signature being written.
	var extra [1]byte
	for tries := 0; ; tries++ {
		n, err := r.Read(extra[:])
		if n > 0 {
			return res, fmt.Errorf("swsusp: stream continues after its %d pages", total)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("swsusp: the source stream after its %d pages: %w", total, err)
		}
		if tries == 100 {
			return res, fmt.Errorf("swsusp: the source stream neither ends nor continues after its %d pages", total)
		}
	}
	if err := w.flushRun(); err != nil {
		return res, err
	}
	if _, err := w.dev.WriteAt(w.mapPage, w.mapAt*PageSize); err != nil {
		return res, fmt.Errorf("swsusp: write swap_map page at page %d: %w", w.mapAt, err)
	}
	if err := w.dev.Sync(); err != nil {
		return res, fmt.Errorf("swsusp: sync before signature: %w", err)
	}
	h := Header{Sig: SigHibernate, OrigSig: w.origSig, Image: uint64(w.first), HWSig: w.opts.HWSig,
		Flags: w.opts.Flags &^ (FlagNoCompress | FlagCRC32 | FlagLZ4)}
	if w.opts.Flags&FlagHWSig == 0 {
		h.HWSig = 0
	}
	switch comp {
	case CompressNone:
		h.Flags |= FlagNoCompress
	case CompressLZ4:
		h.Flags |= FlagCRC32 | FlagLZ4
		h.CRC32 = crc
	default:
		h.Flags |= FlagCRC32
		h.CRC32 = crc
	}
	page := append([]byte(nil), w.orig...)
	h.Put(page)
	if _, err := w.dev.WriteAt(page, w.headerPage*PageSize); err != nil {
		return res, fmt.Errorf("swsusp: write signature at page %d: %w", w.headerPage, err)
	}
	if err := w.dev.Sync(); err != nil {
		return res, fmt.Errorf("swsusp: sync after signature: %w", err)
	}
	res.Header, res.Pages, res.SwapPages = h, total, w.written
	return res, nil
}
