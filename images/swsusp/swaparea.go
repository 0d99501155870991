package swsusp

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Byte offsets of union swap_header's info (include/linux/swap.h).
const (
	offSwapVersion  = 1024
	offSwapLastPage = 1028
	offSwapBad      = 1032
	offSwapUUID     = 1036
	offSwapLabel    = 1052
	offSwapBadPages = 1536
)

// SwapArea is what the first page of a swap area says of it (mkswap's
// header), read from under the hibernation header.
type SwapArea struct {
	Version  uint32
	LastPage uint32 // index of the area's last usable page
	BadPages []uint32
	UUID     [16]byte
	Label    string
}

// ParseSwapArea reads the swap header info from an area's first page.
func ParseSwapArea(page []byte) SwapArea {
	le := binary.LittleEndian
	a := SwapArea{
		Version:  le.Uint32(page[offSwapVersion:]),
		LastPage: le.Uint32(page[offSwapLastPage:]),
		Label:    cstr(page[offSwapLabel : offSwapLabel+16]),
	}
	copy(a.UUID[:], page[offSwapUUID:])
	n := le.Uint32(page[offSwapBad:])
	for i := uint32(0); i < n && offSwapBadPages+4*int(i)+4 <= offHWSig; i++ {
		a.BadPages = append(a.BadPages, le.Uint32(page[offSwapBadPages+4*int(i):]))
	}
	return a
}

// UUIDString formats the area's UUID as blkid does.
func (a SwapArea) UUIDString() string {
	u := a.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// FormatSwap writes a version-1 swap area header (as mkswap does) at page
// headerPage of dev for an area of pages pages, with the given UUID and label.
func FormatSwap(dev io.WriterAt, headerPage int64, pages uint32, uuid [16]byte, label string) error {
	if pages < 10 {
		return fmt.Errorf("swsusp: swap area of %d pages is too small", pages)
	}
	if len(label) > 16 {
		return fmt.Errorf("swsusp: swap label %q longer than 16 bytes", label)
	}
	page := make([]byte, PageSize)
	le := binary.LittleEndian
	le.PutUint32(page[offSwapVersion:], 1)
	le.PutUint32(page[offSwapLastPage:], pages-1)
	copy(page[offSwapUUID:], uuid[:])
	copy(page[offSwapLabel:], label)
	copy(page[offSig:], SigSwap2)
	if _, err := dev.WriteAt(page, headerPage*PageSize); err != nil {
		return fmt.Errorf("swsusp: write swap header at page %d: %w", headerPage, err)
	}
	return nil
}
