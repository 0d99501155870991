package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/thawlinux/thaw/images/swsusp"
)

// PFN list encoding of the snapshot stream's metadata pages
// (kernel/power/snapshot.c), as images/swsusp reads it.
const (
	pfnZeroFlag = 1 << 63         // ENCODED_PFN_ZERO_FLAG: all-zero page, no data page (6.9+)
	pfnEnd      = ^uint64(0)      // BM_END_OF_MAP: end of the list
	pfnLimit    = uint64(1) << 40 // no x86-64 machine has page frames beyond
	maxPages    = int64(1) << 40  // sanity bound on a stream's page count
)

var (
	// ErrNotMarker means a data page that was to be replaced does not carry
	// the marker of its mailbox page.
	ErrNotMarker = errors.New("page does not carry its mailbox marker")
	// ErrNotSaved means the metadata does not list a mailbox page's PFN.
	ErrNotSaved = errors.New("mailbox page is not in the snapshot")
	// ErrZeroPage means the metadata flags a mailbox page as all zeros, so
	// the stream has no data page for it.
	ErrZeroPage = errors.New("mailbox page saved as a zero page, without a data page")
)

// A StreamError reports a snapshot stream that [Injector] or [Extract]
// cannot use: the stream page at fault (0 is swsusp_info) and, when it
// concerns a mailbox page, that page's index and PFN.
type StreamError struct {
	Page  int64
	PFN   uint64
	Index int // mailbox page, -1 when the error concerns none
	Err   error
}

func (e *StreamError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("mailbox: stream page %d (byte %d): %v", e.Page, e.Page*PageSize, e.Err)
	}
	return fmt.Sprintf("mailbox: stream page %d (byte %d), PFN %#x, mailbox page %d: %v", e.Page, e.Page*PageSize, e.PFN, e.Index, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// target is a data page that holds a mailbox page.
type target struct {
	data  int64 // index among the stream's data pages
	index int   // mailbox page
}

// walker reads a snapshot stream page by page and finds the data pages of
// the first need mailbox pages. It holds one page, the PFN-to-mailbox-page
// map and the targets found: memory in proportion to the mailbox, not to the
// stream.
type walker struct {
	r         io.Reader
	pfns      []uint64
	need      int
	allowZero bool
	index     map[uint64]int // PFN → mailbox page, for pages below need
	buf       []byte

	page       int64 // stream page in buf, -1 before the header
	pages      int64 // stream pages, from swsusp_info
	meta       int64 // metadata pages
	imagePages uint64
	done       bool // EOF returned

	ended   bool   // end of the PFN list seen
	entries uint64 // PFNs listed
	last    uint64
	data    int64 // data pages listed
	found   []bool
	metaOK  bool // metadata read and checked
	targets []target
	next    int
}

func newWalker(r io.Reader, pfns []uint64, need int, allowZero bool) (*walker, error) {
	if len(pfns) == 0 {
		return nil, errors.New("mailbox: no mailbox PFNs")
	}
	w := &walker{
		r: r, pfns: pfns, need: need, allowZero: allowZero,
		index: make(map[uint64]int, need),
		buf:   make([]byte, PageSize),
		page:  -1,
		found: make([]bool, need),
	}
	seen := make(map[uint64]int, len(pfns))
	for i, pfn := range pfns {
		if pfn >= pfnLimit {
			return nil, fmt.Errorf("mailbox: mailbox page %d: PFN %#x beyond any physical address", i, pfn)
		}
		if j, ok := seen[pfn]; ok {
			return nil, fmt.Errorf("mailbox: mailbox pages %d and %d both at PFN %#x", j, i, pfn)
		}
		seen[pfn] = i
		if i < need {
			w.index[pfn] = i
		}
	}
	return w, nil
}

func (w *walker) fail(index int, err error) error {
	e := &StreamError{Page: w.page, Index: index, Err: err}
	if index >= 0 {
		e.PFN = w.pfns[index]
	}
	return e
}

// step reads the next page of the stream into buf. For a data page holding
// one of the mailbox pages it returns that page's index, otherwise -1. After
// the last page it checks that the stream ends and returns io.EOF.
func (w *walker) step() (int, error) {
	if w.done || (w.page >= 0 && w.page+1 == w.pages) {
		if !w.done {
			var one [1]byte
			n, err := io.ReadFull(w.r, one[:])
			if n > 0 {
				w.page++
				return -1, w.fail(-1, errors.New("data after the last page of the stream"))
			}
			if err != io.EOF {
				w.page++
				return -1, w.fail(-1, err)
			}
			if w.next != len(w.targets) {
				return -1, w.fail(-1, fmt.Errorf("%d mailbox pages not reached", len(w.targets)-w.next))
			}
			w.done = true
		}
		return -1, io.EOF
	}
	w.page++
	if _, err := io.ReadFull(w.r, w.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return -1, w.fail(-1, err)
	}
	switch {
	case w.page == 0:
		return -1, w.header()
	case w.page <= w.meta:
		return -1, w.metadata()
	}
	k := w.page - 1 - w.meta
	if w.next < len(w.targets) && w.targets[w.next].data == k {
		w.next++
		return w.targets[w.next-1].index, nil
	}
	return -1, nil
}

func (w *walker) header() error {
	info, err := swsusp.ParseInfo(w.buf)
	if err != nil {
		return w.fail(-1, err)
	}
	if info.Pages > uint64(maxPages) {
		return w.fail(-1, fmt.Errorf("swsusp_info lists %d pages", info.Pages))
	}
	w.pages = int64(info.Pages)
	w.meta = int64(info.MetaPages())
	w.imagePages = info.ImagePages
	if w.meta == 0 {
		return w.endMetadata()
	}
	return nil
}

// metadata reads the PFN list in a metadata page, checking it the way
// swsusp.NewStreamReader does, and notes where the mailbox pages lie.
func (w *walker) metadata() error {
	le := binary.LittleEndian
	for j := 0; j < PageSize/8; j++ {
		v := le.Uint64(w.buf[j*8:])
		if w.ended {
			if v != 0 && v != pfnEnd {
				return w.fail(-1, fmt.Errorf("entry %d: PFN %#x after the end marker", j, v))
			}
			continue
		}
		if v == pfnEnd {
			w.ended = true
			continue
		}
		pfn := v &^ pfnZeroFlag
		if w.entries > 0 && pfn <= w.last {
			return w.fail(-1, fmt.Errorf("entry %d: PFN %#x not above the previous %#x", j, pfn, w.last))
		}
		if pfn >= pfnLimit {
			return w.fail(-1, fmt.Errorf("entry %d: PFN %#x beyond any physical address", j, pfn))
		}
		w.last = pfn
		w.entries++
		zero := v&pfnZeroFlag != 0
		if i, ok := w.index[pfn]; ok {
			if zero && !w.allowZero {
				return w.fail(i, ErrZeroPage)
			}
			w.found[i] = true
			if !zero {
				w.targets = append(w.targets, target{data: w.data, index: i})
			}
		}
		if !zero {
			w.data++
		}
	}
	if w.page == w.meta {
		return w.endMetadata()
	}
	return nil
}

func (w *walker) endMetadata() error {
	if uint64(w.data) != w.imagePages {
		return w.fail(-1, fmt.Errorf("metadata lists %d data pages, swsusp_info.image_pages says %d", w.data, w.imagePages))
	}
	if want := (w.entries*8 + PageSize - 1) / PageSize; want != uint64(w.meta) {
		return w.fail(-1, fmt.Errorf("%d PFNs need %d metadata pages, the stream has %d", w.entries, want, w.meta))
	}
	for i, ok := range w.found {
		if !ok {
			return w.fail(i, ErrNotSaved)
		}
	}
	w.metaOK = true
	return nil
}

// An Injector reads a snapshot stream and yields it with the data pages of
// the first mailbox pages replaced by a payload, every other byte as it is.
// It reads the stream in whole pages and holds one.
type Injector struct {
	w        *walker
	nonce    [16]byte
	payload  []byte
	pages    int
	off      int // bytes of w.buf already returned
	replaced int
	err      error
}

// NewInjector returns an Injector that puts payload into the mailbox whose
// page i has PFN pfns[i], for the capture with the given nonce. The payload
// must be one that Parse accepts with that nonce (bytes after its total
// length are dropped) and fit in len(pfns) pages.
//
// Reading fails with a *StreamError when a data page to be replaced is not
// the marker page of its mailbox page ([ErrNotMarker]), when the metadata
// does not list a needed mailbox page ([ErrNotSaved]) or flags it as a zero
// page ([ErrZeroPage]), when the stream is not a valid snapshot stream, when
// it ends early (io.ErrUnexpectedEOF) or goes on after its last page.
func NewInjector(stream io.Reader, pfns []uint64, nonce [16]byte, payload []byte) (*Injector, error) {
	if len(pfns) == 0 {
		return nil, errors.New("mailbox: no mailbox PFNs")
	}
	p, err := Parse(payload, nonce)
	if err != nil {
		return nil, err
	}
	payload = payload[:p.Size]
	pages := (len(payload) + PageSize - 1) / PageSize
	if pages > len(pfns) {
		return nil, fmt.Errorf("mailbox: payload of %d bytes needs %d pages, the mailbox has %d", len(payload), pages, len(pfns))
	}
	w, err := newWalker(stream, pfns, pages, false)
	if err != nil {
		return nil, err
	}
	return &Injector{w: w, nonce: nonce, payload: payload, pages: pages, off: PageSize}, nil
}

// Read implements io.Reader.
func (in *Injector) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for n < len(p) && in.err == nil {
		if in.off == PageSize {
			in.err = in.fill()
			continue
		}
		c := copy(p[n:], in.w.buf[in.off:])
		in.off += c
		n += c
	}
	if n > 0 {
		return n, nil
	}
	return 0, in.err
}

// fill reads the next page and replaces it if it belongs to the payload.
func (in *Injector) fill() error {
	i, err := in.w.step()
	if err != nil {
		if err == io.EOF && in.replaced != in.pages {
			return fmt.Errorf("mailbox: stream ended with %d of %d payload pages written", in.replaced, in.pages)
		}
		return err
	}
	if i >= 0 {
		if !IsMarker(in.w.buf, in.nonce, i) {
			return in.w.fail(i, ErrNotMarker)
		}
		n := copy(in.w.buf, in.payload[i*PageSize:min((i+1)*PageSize, len(in.payload))])
		clear(in.w.buf[n:])
		in.replaced++
	}
	in.off = 0
	return nil
}

// Replaced returns the number of data pages replaced so far; once the
// stream has been read to io.EOF it equals Pages.
func (in *Injector) Replaced() int { return in.replaced }

// Pages returns the number of mailbox pages the payload takes.
func (in *Injector) Pages() int { return in.pages }

// Extract reads a snapshot stream as far as the last mailbox page and
// returns the mailbox region, len(pfns)*PageSize bytes, page i from the data
// page of PFN pfns[i]. A mailbox page the metadata flags as all zeros is
// returned as zeros; one the metadata does not list is an error
// ([ErrNotSaved]).
func Extract(stream io.Reader, pfns []uint64) ([]byte, error) {
	w, err := newWalker(stream, pfns, len(pfns), true)
	if err != nil {
		return nil, err
	}
	region := make([]byte, len(pfns)*PageSize)
	for !w.metaOK || w.next < len(w.targets) {
		i, err := w.step()
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			copy(region[i*PageSize:], w.buf)
		}
	}
	return region, nil
}
