package kexec

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// Offsets in struct boot_params, the "zero page"
// (arch/x86/include/uapi/asm/bootparam.h; Documentation/arch/x86/zero-page.rst).
const (
	BootParamsSize = 4096

	offACPIRSDPAddr    = 0x070 // u64 acpi_rsdp_addr
	offExtRamdiskImage = 0x0c0 // u32 ext_ramdisk_image
	offExtRamdiskSize  = 0x0c4 // u32 ext_ramdisk_size
	offExtCmdLinePtr   = 0x0c8 // u32 ext_cmd_line_ptr
	offEFIInfo         = 0x1c0 // struct efi_info, 32 bytes
	sizeEFIInfo        = 0x20
	offE820Entries     = 0x1e8 // u8 e820_entries
	offSentinel        = 0x1ef // u8 sentinel
	offRamdiskImage    = 0x218 // hdr.ramdisk_image
	offRamdiskSize     = 0x21c // hdr.ramdisk_size
	offCmdLinePtr      = 0x228 // hdr.cmd_line_ptr
	offCmdlineSize     = 0x238 // hdr.cmdline_size
	offSetupData       = 0x250 // hdr.setup_data, u64
	offE820Table       = 0x2d0 // struct boot_e820_entry e820_table[E820_MAX_ENTRIES_ZEROPAGE]

	// E820Max is the number of entries boot_params holds
	// (E820_MAX_ENTRIES_ZEROPAGE).
	E820Max       = 128
	e820EntrySize = 20 // u64 addr, u64 size, u32 type, packed
)

// EncodeE820 writes table into the boot_params page bp: the count at 0x1e8
// and the entries (addr, size, type; 20 bytes each) at 0x2d0, every unused
// slot zeroed.
func EncodeE820(bp []byte, table []manifest.E820Entry) error {
	if len(bp) < BootParamsSize {
		return fmt.Errorf("kexec: boot_params: %d bytes, want %d", len(bp), BootParamsSize)
	}
	if len(table) > E820Max {
		return fmt.Errorf("%w: %d, at most %d", ErrTooManyEntries, len(table), E820Max)
	}
	for i, e := range table {
		if e.End <= e.Start {
			return fmt.Errorf("kexec: e820[%d]: end %#x not above start %#x", i, e.End, e.Start)
		}
	}
	clear(bp[offE820Table : offE820Table+E820Max*e820EntrySize])
	bp[offE820Entries] = byte(len(table))
	for i, e := range table {
		o := offE820Table + i*e820EntrySize
		binary.LittleEndian.PutUint64(bp[o:], e.Start)
		binary.LittleEndian.PutUint64(bp[o+8:], e.End-e.Start)
		binary.LittleEndian.PutUint32(bp[o+16:], e.Type)
	}
	return nil
}

// DecodeE820 reads the e820 table of the boot_params page bp, naming the
// types as /sys/firmware/memmap does.
func DecodeE820(bp []byte) ([]manifest.E820Entry, error) {
	if len(bp) < BootParamsSize {
		return nil, fmt.Errorf("kexec: boot_params: %d bytes, want %d", len(bp), BootParamsSize)
	}
	n := int(bp[offE820Entries])
	if n > E820Max {
		return nil, fmt.Errorf("kexec: boot_params e820_entries (%#x) = %d, at most %d", offE820Entries, n, E820Max)
	}
	table := make([]manifest.E820Entry, n)
	for i := range table {
		o := offE820Table + i*e820EntrySize
		addr := binary.LittleEndian.Uint64(bp[o:])
		size := binary.LittleEndian.Uint64(bp[o+8:])
		typ := binary.LittleEndian.Uint32(bp[o+16:])
		if size == 0 || addr+size < addr {
			return nil, fmt.Errorf("kexec: boot_params e820_table[%d] (%#x): addr %#x size %#x", i, o, addr, size)
		}
		table[i] = manifest.E820Entry{Start: addr, End: addr + size, Type: typ, Name: TypeName(typ)}
	}
	return table, nil
}

// params are the fields LoadWithE820 sets in boot_params besides the e820
// table.
type params struct {
	initrdStart, initrdSize uint32 // 0, 0: no initrd
	cmdLinePtr, cmdLineSize uint32 // cmdLineSize counts the NUL
	keepEFI                 bool   // keep efi_info (else zeroed)
	rsdp                    uint64 // acpi_rsdp_addr when boot_params has none
}

// patch writes p into the boot_params page bp: ramdisk and command line
// below 4 GiB (their ext_* high halves zeroed), no setup_data, the sentinel
// cleared (the fields are meant), and efi_info zeroed unless kept.
func (p params) patch(bp []byte) {
	le := binary.LittleEndian
	le.PutUint32(bp[offRamdiskImage:], p.initrdStart)
	le.PutUint32(bp[offRamdiskSize:], p.initrdSize)
	le.PutUint32(bp[offCmdLinePtr:], p.cmdLinePtr)
	le.PutUint32(bp[offCmdlineSize:], p.cmdLineSize)
	le.PutUint32(bp[offExtRamdiskImage:], 0)
	le.PutUint32(bp[offExtRamdiskSize:], 0)
	le.PutUint32(bp[offExtCmdLinePtr:], 0)
	le.PutUint64(bp[offSetupData:], 0)
	bp[offSentinel] = 0
	if !p.keepEFI {
		clear(bp[offEFIInfo : offEFIInfo+sizeEFIInfo])
	}
	if p.rsdp != 0 && le.Uint64(bp[offACPIRSDPAddr:]) == 0 {
		le.PutUint64(bp[offACPIRSDPAddr:], p.rsdp)
	}
}

// ParseSystab reads the ACPI RSDP's address from the EFI system table
// summary (/sys/firmware/efi/systab: "ACPI20=0x…", or "ACPI=0x…" for
// ACPI 1.0), or returns 0 when it names none.
func ParseSystab(b []byte) (uint64, error) {
	var acpi1 uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || (k != "ACPI20" && k != "ACPI") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("kexec: EFI system table: %s=%s is not an address", k, v)
		}
		if k == "ACPI20" {
			return n, nil
		}
		acpi1 = n
	}
	return acpi1, nil
}
