package kexec

import (
	"errors"
	"fmt"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
)

// Default places of what LoadWithE820 reads from the running kernel.
const (
	DefaultBootParamsPath = "/sys/kernel/boot_params/data"
	DefaultSystabPath     = "/sys/firmware/efi/systab"
	DefaultMemmapDir      = "/sys/firmware/memmap"
)

// Image is what to boot.
type Image struct {
	Kernel  string // bzImage
	Initrd  string // "": none
	Cmdline string
}

// Options tune LoadWithE820.
type Options struct {
	// DryRun builds every segment and the boot_params page but skips
	// kexec_load(2).
	DryRun bool
	// BootParamsPath is the running kernel's boot_params page
	// (DefaultBootParamsPath when "").
	BootParamsPath string
	// MemmapDir is the running kernel's firmware memory map
	// (DefaultMemmapDir when "").
	MemmapDir string
	// KeepEFI keeps efi_info in boot_params. By default it is zeroed: the
	// running kernel's EFI memory map pointer is stale and no SETUP_EFI
	// data is passed, so the next kernel boots as from a BIOS and finds
	// ACPI through acpi_rsdp_addr: kept when set, else (an EFI boot
	// through the kernel's EFI stub leaves it 0) the ACPI 2.0 RSDP that
	// the EFI system table names (SystabPath).
	KeepEFI bool
	// SystabPath is the running kernel's EFI system table summary
	// (DefaultSystabPath when "").
	SystabPath string
	// Logf, when set, is told what is built.
	Logf func(format string, args ...any)
}

// Segment is one range of physical memory the next kernel gets loaded with.
type Segment struct {
	Name       string // kernel, initrd, cmdline, boot_params, purgatory
	Start, End uint64 // physical, End exclusive
	Size       uint64 // bytes copied from the file or buffer; the rest is zeroed
}

// Loaded describes what LoadWithE820 built (and loaded, unless DryRun).
type Loaded struct {
	Entry       uint64 // where the kexec jump lands: the purgatory
	KernelEntry uint64 // the kernel's 64-bit entry, where the purgatory goes
	BootParams  uint64 // physical address of boot_params (RSI at entry)
	InitrdStart uint64 // 0 without an initrd
	InitrdSize  uint64
	CmdLine     uint64 // physical address of the NUL-terminated command line
	Segments    []Segment
	// E820 is the table written into boot_params, decoded back from the
	// page that was loaded.
	E820 []manifest.E820Entry
	// Usable is the RAM both the source table and the running kernel's
	// firmware map call RAM: the only place segments went.
	Usable []manifest.E820Entry
	// Params is the boot_params page as loaded.
	Params []byte
}

// Errors LoadWithE820 wraps.
var (
	// ErrKernel: the kernel file cannot be loaded this way (not a bzImage,
	// boot protocol before 2.05, not relocatable).
	ErrKernel = errors.New("kexec: kernel not loadable with kexec_load")
	// ErrNoRoom: a segment has no place in RAM both maps agree on.
	ErrNoRoom = errors.New("kexec: no room in RAM of both maps")
	// ErrNotLoaded: Exec found no kernel loaded.
	ErrNotLoaded = errors.New("kexec: no kernel is loaded")
	// ErrUnsupported: this platform has no kexec (not linux/amd64).
	ErrUnsupported = errors.New("kexec: not supported on this platform")
)

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o Options) bootParamsPath() string {
	if o.BootParamsPath != "" {
		return o.BootParamsPath
	}
	return DefaultBootParamsPath
}

func (o Options) memmapDir() string {
	if o.MemmapDir != "" {
		return o.MemmapDir
	}
	return DefaultMemmapDir
}

// checkSource refuses a source table boot_params cannot carry.
func checkSource(src []manifest.E820Entry) error {
	if len(src) == 0 {
		return errors.New("kexec: the source e820 table is empty")
	}
	if len(src) > E820Max {
		return fmt.Errorf("%w: the source has %d, at most %d", ErrTooManyEntries, len(src), E820Max)
	}
	for i, e := range src {
		if e.End <= e.Start {
			return fmt.Errorf("kexec: source e820[%d]: end %#x not above start %#x", i, e.End, e.Start)
		}
	}
	return nil
}

func entries(rs []memmap.Span) []manifest.E820Entry {
	out := make([]manifest.E820Entry, len(rs))
	for i, r := range rs {
		out[i] = manifest.E820Entry{Start: r.Start, End: r.End, Type: E820RAM, Name: TypeName(E820RAM)}
	}
	return out
}
