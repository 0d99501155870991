package swsusp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// PageSize is the x86-64 page size; every unit in the image is a page.
const PageSize = 4096

// Signatures found in the last ten bytes of a swap area's first page.
const (
	SigHibernate = "S1SUSPEND" // HIBERNATE_SIG: an image is stored here
	SigSwap2     = "SWAPSPACE2"
	SigSwap1     = "SWAP-SPACE"
)

// Header flags (kernel/power/power.h, SF_*).
const (
	FlagPlatformMode = 1  // SF_PLATFORM_MODE: resume through the platform (ACPI S4)
	FlagNoCompress   = 2  // SF_NOCOMPRESS_MODE: pages stored as they are
	FlagCRC32        = 4  // SF_CRC32_MODE: crc32 covers the uncompressed stream
	FlagHWSig        = 8  // SF_HW_SIG: hw_sig must match the firmware's
	FlagLZ4          = 16 // SF_COMPRESSION_ALG_LZ4 (6.9+): LZ4 instead of LZO
)

// Compression names the way the stream is stored in a swap area.
type Compression string

// The three storage forms the kernels read.
const (
	CompressLZO  Compression = "lzo"
	CompressLZ4  Compression = "lz4"
	CompressNone Compression = "none"
)

// ParseCompression accepts lzo, lz4 or none.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(s)); c {
	case CompressLZO, CompressLZ4, CompressNone:
		return c, nil
	}
	return "", fmt.Errorf("swsusp: unknown compression %q (want lzo, lz4 or none)", s)
}

// Byte offsets of the swsusp_header fields in the area's first page
// (kernel/power/swap.c, struct swsusp_header, __packed, identical in 6.1 and
// 6.12).
const (
	offHWSig   = PageSize - 20 - 8 - 4 - 4 - 4 // 4056
	offCRC32   = offHWSig + 4                  // 4060
	offImage   = offCRC32 + 4                  // 4064, sector_t
	offFlags   = offImage + 8                  // 4072
	offOrigSig = offFlags + 4                  // 4076
	offSig     = offOrigSig + 10               // 4086
)

// Header is struct swsusp_header, kernel/power/swap.c.
type Header struct {
	HWSig   uint32 // firmware hardware signature (SF_HW_SIG)
	CRC32   uint32 // crc32_le(0, uncompressed stream after the header page) when SF_CRC32_MODE
	Image   uint64 // page offset of the first swap_map page
	Flags   uint32
	OrigSig string // the swap signature the image displaced
	Sig     string // S1SUSPEND while an image is stored
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ParseHeader decodes the swsusp_header at the end of a swap area's first page.
func ParseHeader(page []byte) Header {
	le := binary.LittleEndian
	return Header{
		HWSig:   le.Uint32(page[offHWSig:]),
		CRC32:   le.Uint32(page[offCRC32:]),
		Image:   le.Uint64(page[offImage:]),
		Flags:   le.Uint32(page[offFlags:]),
		OrigSig: cstr(page[offOrigSig : offOrigSig+10]),
		Sig:     cstr(page[offSig : offSig+10]),
	}
}

// Put encodes h into page, leaving the rest of the page (the swap area's
// label, UUID and size) as it is.
func (h Header) Put(page []byte) {
	le := binary.LittleEndian
	le.PutUint32(page[offHWSig:], h.HWSig)
	le.PutUint32(page[offCRC32:], h.CRC32)
	le.PutUint64(page[offImage:], h.Image)
	le.PutUint32(page[offFlags:], h.Flags)
	copy(page[offOrigSig:offOrigSig+10], make([]byte, 10))
	copy(page[offOrigSig:offOrigSig+10], h.OrigSig)
	copy(page[offSig:offSig+10], make([]byte, 10))
	copy(page[offSig:offSig+10], h.Sig)
}

// Compression returns the storage form the flags select.
func (h Header) Compression() Compression {
	switch {
	case h.Flags&FlagNoCompress != 0:
		return CompressNone
	case h.Flags&FlagLZ4 != 0:
		return CompressLZ4
	}
	return CompressLZO
}

// ArchHeader is x86's struct restore_data_record (arch/x86/power/hibernate.c),
// which the kernel writes over the start of swsusp_info in place of the
// utsname: on x86 the restore checks only Magic and E820Checksum.
type ArchHeader struct {
	JumpAddress     uint64
	JumpAddressPhys uint64
	CR3             uint64
	Magic           uint64
	E820Checksum    uint64
}

// RestoreMagic is x86-64's RESTORE_MAGIC, the same in 6.1 and 6.12.
const RestoreMagic = 0x23456789ABCDEF02

// Byte offsets of struct swsusp_info (kernel/power/power.h) on x86-64.
const (
	utsLen          = 65
	offRelease      = 2 * utsLen // new_utsname.release
	offVersionCode  = 392
	offNumPhysPages = 400
	offCPUs         = 408
	offImagePages   = 416
	offPages        = 424
	offSize         = 432
)

// Info is struct swsusp_info, the first page of the snapshot stream.
type Info struct {
	Arch ArchHeader
	// Release and VersionCode come from the utsname, which x86 kernels
	// overwrite with the arch record: they are empty there.
	Release      string
	VersionCode  uint32
	NumPhysPages uint64 // RAM pages of the hibernated machine
	CPUs         int32
	ImagePages   uint64 // data pages in the stream (zero pages not counted)
	Pages        uint64 // pages in the stream: 1 + metadata + ImagePages
	Size         uint64 // Pages * PageSize
}

// MetaPages is the number of metadata pages the stream carries.
func (i Info) MetaPages() uint64 { return i.Pages - i.ImagePages - 1 }

// ParseInfo decodes a swsusp_info page and checks its counts agree.
func ParseInfo(page []byte) (Info, error) {
	if len(page) < PageSize {
		return Info{}, fmt.Errorf("swsusp: swsusp_info: short page (%d bytes)", len(page))
	}
	le := binary.LittleEndian
	in := Info{
		Arch: ArchHeader{
			JumpAddress:     le.Uint64(page[0:]),
			JumpAddressPhys: le.Uint64(page[8:]),
			CR3:             le.Uint64(page[16:]),
			Magic:           le.Uint64(page[24:]),
			E820Checksum:    le.Uint64(page[32:]),
		},
		Release:      cstr(page[offRelease : offRelease+utsLen]),
		VersionCode:  le.Uint32(page[offVersionCode:]),
		NumPhysPages: le.Uint64(page[offNumPhysPages:]),
		CPUs:         int32(le.Uint32(page[offCPUs:])),
		ImagePages:   le.Uint64(page[offImagePages:]),
		Pages:        le.Uint64(page[offPages:]),
		Size:         le.Uint64(page[offSize:]),
	}
	switch {
	case in.Arch.Magic != RestoreMagic:
		return in, fmt.Errorf("swsusp: swsusp_info: arch magic %#x at byte 24, want %#x (not an x86-64 image)", in.Arch.Magic, uint64(RestoreMagic))
	case in.Pages <= in.ImagePages:
		return in, fmt.Errorf("swsusp: swsusp_info: pages %d not above image_pages %d", in.Pages, in.ImagePages)
	case in.Size != in.Pages*PageSize:
		return in, fmt.Errorf("swsusp: swsusp_info: size %d is not pages %d × %d", in.Size, in.Pages, PageSize)
	case in.ImagePages > in.NumPhysPages:
		return in, fmt.Errorf("swsusp: swsusp_info: image_pages %d above the machine's %d pages", in.ImagePages, in.NumPhysPages)
	case in.MetaPages() > (in.NumPhysPages*8+PageSize-1)/PageSize+1:
		return in, fmt.Errorf("swsusp: swsusp_info: %d metadata pages for a machine of %d pages", in.MetaPages(), in.NumPhysPages)
	}
	return in, nil
}

// E820Entry is one entry of the firmware memory map (struct e820_entry).
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// E820Checksum is the digest x86 stores in the arch header:
// ~crc32_le(~0, struct e820_table) over nr_entries and the packed entries of
// the firmware table (compute_e820_crc32 in arch/x86/power/hibernate.c).
func E820Checksum(table []E820Entry) uint32 {
	b := make([]byte, 4, 4+20*len(table))
	binary.LittleEndian.PutUint32(b, uint32(len(table)))
	for _, e := range table {
		b = binary.LittleEndian.AppendUint64(b, e.Addr)
		b = binary.LittleEndian.AppendUint64(b, e.Size)
		b = binary.LittleEndian.AppendUint32(b, e.Type)
	}
	return crc32.ChecksumIEEE(b)
}

// crc32le is the kernel's crc32_le(crc, p, len): the reflected IEEE CRC
// without the initial and final inversions that hash/crc32 applies.
func crc32le(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, crc32.IEEETable, p)
}
