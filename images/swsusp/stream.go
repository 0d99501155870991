package swsusp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pfnZeroFlag marks a PFN whose page was all zeros and is left out of the
// stream (ENCODED_PFN_ZERO_FLAG, kernel/power/snapshot.c, 6.9+).
const pfnZeroFlag = 1 << 63

// pfnEnd ends the PFN list in the last metadata page (BM_END_OF_MAP).
const pfnEnd = ^uint64(0)

// Page is one saved page frame of a snapshot stream.
type Page struct {
	PFN  uint64
	Zero bool   // left out of the stream because it was all zeros (6.9+)
	Data []byte // PageSize bytes, nil for a zero page; valid until the next call to Next
	// Index is the data page's position among the stream's data pages
	// (0-based), -1 for a zero page.
	Index int64
}

// StreamReader reads a snapshot stream: the swsusp_info page, the metadata
// pages and the data pages, as /dev/snapshot produces and consumes it. It
// holds the PFN list (8 bytes per saved page) and one page at a time.
type StreamReader struct {
	r    io.Reader
	Info Info
	// InfoPage is the raw first page of the stream.
	InfoPage []byte
	// PFNs is the decoded PFN list in stream order, zero flags included.
	PFNs      []uint64
	ZeroPages uint64
	next      int
	data      int64
	buf       []byte
	off       int64
}

// NewStreamReader reads the header and metadata pages of a snapshot stream
// and checks them: PFNs strictly ascending, the number of non-zero PFNs equal
// to image_pages, the metadata page count what the kernel would compute.
func NewStreamReader(r io.Reader) (*StreamReader, error) {
	s := &StreamReader{r: r, InfoPage: make([]byte, PageSize), buf: make([]byte, PageSize)}
	if _, err := io.ReadFull(r, s.InfoPage); err != nil {
		return nil, fmt.Errorf("swsusp: stream: header page: %w", unexpected(err))
	}
	s.off = PageSize
	info, err := ParseInfo(s.InfoPage)
	if err != nil {
		return nil, err
	}
	s.Info = info
	meta := info.MetaPages()
	ended := false
	var last uint64
	var data uint64
	for m := uint64(0); m < meta; m++ {
		if _, err := io.ReadFull(r, s.buf); err != nil {
			return nil, fmt.Errorf("swsusp: stream: metadata page %d (stream byte %d): %w", m, s.off, unexpected(err))
		}
		for j := 0; j < PageSize/8; j++ {
			v := binary.LittleEndian.Uint64(s.buf[j*8:])
			if ended {
				if v != 0 && v != pfnEnd {
					return nil, fmt.Errorf("swsusp: stream: metadata page %d entry %d (stream byte %d): PFN %#x after the end marker", m, j, s.off+int64(j*8), v)
				}
				continue
			}
			if v == pfnEnd {
				ended = true
				continue
			}
			pfn := v &^ pfnZeroFlag
			if len(s.PFNs) > 0 && pfn <= last {
				return nil, fmt.Errorf("swsusp: stream: metadata page %d entry %d (stream byte %d): PFN %#x not above the previous %#x", m, j, s.off+int64(j*8), pfn, last)
			}
			if pfn >= 1<<40 {
				return nil, fmt.Errorf("swsusp: stream: metadata page %d entry %d (stream byte %d): PFN %#x beyond any physical address", m, j, s.off+int64(j*8), pfn)
			}
			last = pfn
			if v&pfnZeroFlag != 0 {
				s.ZeroPages++
			} else {
				data++
			}
			s.PFNs = append(s.PFNs, v)
		}
		s.off += PageSize
	}
	if data != info.ImagePages {
		return nil, fmt.Errorf("swsusp: stream: metadata lists %d data pages, swsusp_info.image_pages says %d", data, info.ImagePages)
	}
	if want := (uint64(len(s.PFNs))*8 + PageSize - 1) / PageSize; want != meta {
		return nil, fmt.Errorf("swsusp: stream: %d PFNs need %d metadata pages, the stream has %d", len(s.PFNs), want, meta)
	}
	return s, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next returns the next saved page frame in PFN order, or io.EOF after the
// last one. Zero pages are returned as records without data.
func (s *StreamReader) Next() (Page, error) {
	if s.next >= len(s.PFNs) {
		return Page{}, io.EOF
	}
	v := s.PFNs[s.next]
	s.next++
	if v&pfnZeroFlag != 0 {
		return Page{PFN: v &^ pfnZeroFlag, Zero: true, Index: -1}, nil
	}
	if _, err := io.ReadFull(s.r, s.buf); err != nil {
		return Page{}, fmt.Errorf("swsusp: stream: data page %d of %d (PFN %#x, stream byte %d): %w", s.data, s.Info.ImagePages, v, s.off, unexpected(err))
	}
	p := Page{PFN: v, Data: s.buf, Index: s.data}
	s.data++
	s.off += PageSize
	return p, nil
}

// Close checks that the stream ends after the last data page.
func (s *StreamReader) Close() error {
	if s.next < len(s.PFNs) {
		return nil
	}
	var one [1]byte
	if n, _ := s.r.Read(one[:]); n > 0 {
		return fmt.Errorf("swsusp: stream: data after the last page (stream byte %d)", s.off)
	}
	return nil
}
