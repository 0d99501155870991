package mailbox

import (
	"bytes"
	"encoding/binary"
)

// PageSize is the size of a mailbox page, the same as swsusp.PageSize.
const PageSize = 4096

// MarkerMagic starts every mailbox page until a payload replaces it.
const MarkerMagic = "THAWMBOX"

// markerLen is the length of a marker page's checked prefix: magic, nonce
// and index.
const markerLen = 8 + 16 + 4

// Mark fills page as mailbox page i of the capture with the given nonce:
// byte j is 0xa5 ^ i ^ j, overwritten at the start by MarkerMagic, the nonce
// and i as a little-endian uint32. page must hold at least 28 bytes; a
// mailbox page holds PageSize.
func Mark(page []byte, nonce [16]byte, i int) {
	for j := range page {
		page[j] = byte(0xa5 ^ i ^ j)
	}
	copy(page, MarkerMagic)
	copy(page[8:], nonce[:])
	binary.LittleEndian.PutUint32(page[24:], uint32(i))
}

// IsMarker reports whether page starts as [Mark] starts mailbox page i of the
// capture with the given nonce. The filler after the first 28 bytes is not
// checked.
func IsMarker(page []byte, nonce [16]byte, i int) bool {
	return len(page) >= markerLen &&
		string(page[:8]) == MarkerMagic &&
		bytes.Equal(page[8:24], nonce[:]) &&
		binary.LittleEndian.Uint32(page[24:]) == uint32(i)
}

// CountMarkers returns how many of region's whole pages carry the marker of
// their own index with the given nonce; the mailbox is intact when that is
// len(region)/PageSize.
func CountMarkers(region []byte, nonce [16]byte) int {
	n := 0
	for i := 0; (i+1)*PageSize <= len(region); i++ {
		if IsMarker(region[i*PageSize:(i+1)*PageSize], nonce, i) {
			n++
		}
	}
	return n
}
