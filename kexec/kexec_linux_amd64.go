package kexec

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"unsafe"

	"github.com/u-root/u-root/pkg/boot/bzimage"
	"github.com/u-root/u-root/pkg/boot/kexec"
	"github.com/u-root/u-root/pkg/boot/purgatory"
	"golang.org/x/sys/unix"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
)

const (
	lowLimit   = 1 << 20 // initrd and command line go above the first MiB
	below4G    = 1 << 32
	segmentMax = 16 // KEXEC_SEGMENT_MAX

	kexecLoadedPath = "/sys/kernel/kexec_loaded"
)

// LoadWithE820 loads img with kexec_load(2). The boot_params start from the
// running kernel's page (Options.BootParamsPath), with the e820 table
// replaced by src exactly, setup_data cleared, the ext_* fields zeroed and,
// unless Options.KeepEFI, efi_info zeroed. Every segment is placed only
// where both src and the running kernel's firmware map (Options.MemmapDir)
// say RAM.
//
// It refuses a source RAM range that lies outside the target's RAM
// (*FitError), a src of more than 128 entries (ErrTooManyEntries), and a
// kernel that is not a relocatable bzImage of boot protocol 2.05 or later
// (ErrKernel). With Options.DryRun it builds everything and stops before
// the system call.
//
// The decompressed kernel is dropped and memory returned to the system
// before the initrd is read and again before kexec_load copies the
// segments into the kernel.
func LoadWithE820(img Image, src []manifest.E820Entry, opt Options) (*Loaded, error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	dst, err := ReadMemmap(opt.memmapDir())
	if err != nil {
		return nil, err
	}
	if err := CheckFits(src, dst); err != nil {
		return nil, err
	}
	usable := pageInward(intersect(memmap.RAM(src), memmap.RAM(dst)))
	for _, r := range usable {
		opt.logf("kexec: RAM of both maps [%#x-%#x]", r.Start, r.End-1)
	}

	bp, err := os.ReadFile(opt.bootParamsPath())
	if err != nil {
		return nil, fmt.Errorf("kexec: boot_params: %w", err)
	}
	if len(bp) < BootParamsSize {
		return nil, fmt.Errorf("kexec: boot_params %s: %d bytes, want %d", opt.bootParamsPath(), len(bp), BootParamsSize)
	}
	bp = bp[:BootParamsSize:BootParamsSize]

	b := &builder{
		mem:    &kexec.Memory{Phys: memoryMap(usable)},
		usable: usable,
		names:  map[uintptr]string{},
	}
	k, err := b.addKernel(img.Kernel)
	if err != nil {
		return nil, err
	}
	// Only the kernel's segments are left of the bzImage: give the rest
	// back before the initrd comes in.
	runtime.GC()
	debug.FreeOSMemory()

	// The purgatory runs at its link address: claim it before anything
	// movable can land there. Its arguments are filled in below.
	purg, pentry, err := b.addPurgatory()
	if err != nil {
		return nil, err
	}

	l := &Loaded{KernelEntry: k.entry, Entry: pentry}
	p := params{keepEFI: opt.KeepEFI}
	if !opt.KeepEFI && binary.LittleEndian.Uint64(bp[offACPIRSDPAddr:]) == 0 {
		path := opt.SystabPath
		if path == "" {
			path = DefaultSystabPath
		}
		if st, err := os.ReadFile(path); err == nil {
			if p.rsdp, err = ParseSystab(st); err != nil {
				return nil, err
			}
			if p.rsdp != 0 {
				opt.logf("kexec: ACPI RSDP at %#x (from %s) for the next kernel's acpi_rsdp_addr", p.rsdp, path)
			}
		}
	}
	if img.Initrd != "" {
		rd, err := os.ReadFile(img.Initrd)
		if err != nil {
			return nil, fmt.Errorf("kexec: initrd: %w", err)
		}
		if uint64(len(rd)) >= below4G {
			return nil, fmt.Errorf("kexec: initrd %s: %d bytes, too large", img.Initrd, len(rd))
		}
		limit := min(uint64(k.initrdAddrMax)+1, below4G)
		at, err := b.add("initrd", rd, lowLimit, limit)
		if err != nil {
			return nil, err
		}
		p.initrdStart, p.initrdSize = uint32(at), uint32(len(rd))
		l.InitrdStart, l.InitrdSize = at, uint64(len(rd))
	}

	cl := append([]byte(img.Cmdline), 0)
	if k.cmdlineMax != 0 && uint64(len(img.Cmdline)) > uint64(k.cmdlineMax) {
		return nil, fmt.Errorf("kexec: command line of %d bytes, %s takes at most %d (cmdline_size at 0x238)", len(img.Cmdline), img.Kernel, k.cmdlineMax)
	}
	at, err := b.add("cmdline", cl, lowLimit, below4G)
	if err != nil {
		return nil, err
	}
	p.cmdLinePtr, p.cmdLineSize = uint32(at), uint32(len(cl))
	l.CmdLine = at

	p.patch(bp)
	if err := EncodeE820(bp, src); err != nil {
		return nil, err
	}
	// The purgatory enters the kernel in 64-bit mode: boot_params may lie
	// anywhere below 4 GiB.
	if l.BootParams, err = b.add("boot_params", bp, pageSize, below4G); err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(purg[8:], k.entry)
	binary.LittleEndian.PutUint64(purg[16:], l.BootParams)

	segs, err := b.segments()
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		// The kernel writes whole pages: every one must be RAM in
		// both maps. Placement guarantees it; this proves it.
		if !inside(usable, uint64(s.Phys.Start), uint64(s.Phys.End())) {
			return nil, fmt.Errorf("%w: %s segment [%#x-%#x] placed outside it", ErrNoRoom, b.name(s), s.Phys.Start, s.Phys.End()-1)
		}
		l.Segments = append(l.Segments, Segment{Name: b.name(s), Start: uint64(s.Phys.Start), End: uint64(s.Phys.End()), Size: uint64(len(s.Buf))})
		opt.logf("kexec: segment %-11s [%#x-%#x] %d bytes", b.name(s), s.Phys.Start, s.Phys.End()-1, len(s.Buf))
	}
	if l.E820, err = DecodeE820(bp); err != nil {
		return nil, err
	}
	l.Usable = entries(usable)
	l.Params = bp
	opt.logf("kexec: entry %#x (kernel %#x), boot_params at %#x with %d e820 entries, command line %q",
		l.Entry, l.KernelEntry, l.BootParams, len(l.E820), img.Cmdline)
	if opt.DryRun {
		return l, nil
	}

	runtime.GC()
	debug.FreeOSMemory()
	if err := load(l.Entry, segs); err != nil {
		return nil, err
	}
	return l, nil
}

// builder collects the segments in u-root's kexec.Memory, whose Phys map
// holds only the RAM both maps agree on.
type builder struct {
	mem    *kexec.Memory
	usable []memmap.Span
	names  map[uintptr]string // segment name by physical start
}

type kernelInfo struct {
	entry         uint64 // 64-bit entry (startup_64)
	initrdAddrMax uint32 // hdr.initrd_addr_max
	cmdlineMax    uint32 // hdr.cmdline_size (without the NUL), 0 if unknown
}

// add places d in free RAM of both maps within [lo, hi), lowest first.
func (b *builder) add(name string, d []byte, lo, hi uint64) (uint64, error) {
	r, err := b.mem.AddPhysSegment(d, kexec.RangeFromInterval(uintptr(lo), uintptr(hi)))
	if err != nil {
		return 0, fmt.Errorf("%w: %s (%d bytes) within [%#x-%#x]: %w", ErrNoRoom, name, len(d), lo, hi-1, err)
	}
	b.names[r.Start] = name
	return uint64(r.Start), nil
}

func (b *builder) name(s kexec.Segment) string {
	if n, ok := b.names[s.Phys.Start]; ok {
		return n
	}
	return "merged"
}

// addKernel adds the loadable segments of the ELF kernel inside the bzImage
// at path, at their physical addresses.
func (b *builder) addKernel(path string) (*kernelInfo, error) {
	kb, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kexec: kernel: %w", err)
	}
	var h bzimage.LinuxHeader
	if len(kb) < binary.Size(&h) || h.UnmarshalBinary(kb) != nil || h.HeaderMagic != bzimage.HeaderMagic {
		return nil, fmt.Errorf("%w: %s is not a bzImage (no HdrS at 0x202)", ErrKernel, path)
	}
	if h.Protocolversion < 0x0205 {
		return nil, fmt.Errorf("%w: %s has boot protocol %d.%02d, 2.05 or later needed", ErrKernel, path, h.Protocolversion>>8, h.Protocolversion&0xff)
	}
	if h.RelocatableKernel == 0 {
		return nil, fmt.Errorf("%w: %s is not relocatable (relocatable_kernel at 0x234 is 0)", ErrKernel, path)
	}
	info := &kernelInfo{initrdAddrMax: h.InitrdAddrMax}
	if h.Protocolversion >= 0x0206 {
		info.cmdlineMax = h.CmdLineSize
	}
	if info.initrdAddrMax == 0 {
		info.initrdAddrMax = bzimage.DefaultInitrdAddrMax
	}

	// From here on kb is garbage: only the decompressed kernel is used.
	code, err := vmlinux(kb, &h)
	if errors.Is(err, errOtherCompression) {
		code, err = vmlinuxUroot(kb)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKernel, path, err)
	}
	f, err := elf.NewFile(bytes.NewReader(code))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: the decompressed kernel: %w", ErrKernel, path, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: %s: the decompressed kernel is %v %v, not a 64-bit x86 kernel", ErrKernel, path, f.Class, f.Machine)
	}
	info.entry = f.Entry
	var entryLoaded bool
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		start, end := p.Paddr, p.Paddr+p.Memsz
		if p.Filesz > p.Memsz || p.Off+p.Filesz > uint64(len(code)) || end < start {
			return nil, fmt.Errorf("%w: %s: ELF program header %d: offset %#x, %#x bytes in file, %#x in memory, of %#x", ErrKernel, path, i, p.Off, p.Filesz, p.Memsz, len(code))
		}
		// The kernel runs where it was linked: its pages must be RAM
		// in both maps, with no say in the matter.
		if !inside(b.usable, start&^(pageSize-1), alignUp(end)) {
			return nil, fmt.Errorf("%w: %s: kernel segment [%#x-%#x] is linked there", ErrNoRoom, path, start, end-1)
		}
		if start <= info.entry && info.entry < end {
			entryLoaded = true
		}
		// Copy: the segments are a part of code only, and code (with
		// the relocations and the decoder's spare capacity) goes now.
		buf := make([]byte, p.Filesz)
		copy(buf, code[p.Off:])
		b.mem.Segments.Insert(kexec.NewSegment(buf, kexec.Range{Start: uintptr(start), Size: uint(p.Memsz)}))
		b.names[uintptr(start)] = "kernel"
	}
	if !entryLoaded {
		return nil, fmt.Errorf("%w: %s: entry %#x is in no loadable segment", ErrKernel, path, info.entry)
	}
	return info, nil
}

// vmlinuxUroot decodes the payload of kb with u-root's bzimage, which
// knows every compression the kernel does.
func vmlinuxUroot(kb []byte) ([]byte, error) {
	// A signed kernel is a PE image: u-root would clear its checksum and
	// certificate table in a copy and log a warning. Only the compressed
	// ELF inside matters here, so hide the DOS magic and skip all that.
	if bytes.HasPrefix(kb, []byte(bzimage.MSDOS)) {
		kb[0], kb[1] = 0, 0
	}
	var bz bzimage.BzImage
	if err := bz.UnmarshalBinary(kb); err != nil {
		return nil, err
	}
	return bz.KernelCode, nil
}

// addPurgatory claims the place of u-root's default purgatory, which drops
// into the kernel's 64-bit entry with RSI pointing at boot_params. It
// returns the segment's buffer, whose 8-byte words at 8 and 16 take the
// kernel entry and the boot_params address, and the purgatory's entry.
// (purgatory.Load does the same, but logs the whole ELF header.)
func (b *builder) addPurgatory() ([]byte, uint64, error) {
	pg, ok := purgatory.Purgatories["default"]
	if !ok {
		return nil, 0, errors.New("kexec: u-root has no default purgatory")
	}
	f, err := elf.NewFile(bytes.NewReader(pg.Code))
	if err != nil {
		return nil, 0, fmt.Errorf("kexec: purgatory: %w", err)
	}
	if len(f.Progs) != 1 || f.Progs[0].Filesz > f.Progs[0].Memsz {
		return nil, 0, fmt.Errorf("kexec: purgatory: %d program headers, want one", len(f.Progs))
	}
	p := f.Progs[0]
	buf := make([]byte, alignUp(p.Memsz))
	if _, err := p.ReadAt(buf[:p.Filesz], 0); err != nil {
		return nil, 0, fmt.Errorf("kexec: purgatory: %w", err)
	}
	at, err := b.add("purgatory", buf, p.Vaddr, p.Vaddr+uint64(len(buf)))
	if err != nil {
		return nil, 0, err
	}
	if at != p.Vaddr {
		return nil, 0, fmt.Errorf("kexec: purgatory placed at %#x, linked for %#x", at, p.Vaddr)
	}
	return buf, f.Entry, nil
}

// segments returns the segments as kexec_load takes them: sorted, page
// aligned, without overlaps. Only when a segment needs it are buffers copied
// (kexec.AlignAndMerge copies every one).
func (b *builder) segments() (kexec.Segments, error) {
	segs := append(kexec.Segments(nil), b.mem.Segments...)
	var merge bool
	for i, s := range segs {
		if s.Phys.Start%pageSize != 0 || (i > 0 && uint64(segs[i-1].Phys.Start)+alignUp(uint64(segs[i-1].Phys.Size)) > uint64(s.Phys.Start)) {
			merge = true
		}
	}
	if merge {
		var err error
		if segs, err = kexec.AlignAndMerge(segs); err != nil {
			return nil, fmt.Errorf("kexec: %w", err)
		}
	}
	for i := range segs {
		size := alignUp(max(uint64(segs[i].Phys.Size), uint64(len(segs[i].Buf))))
		segs[i].Phys.Size = uint(size)
	}
	if len(segs) > segmentMax {
		return nil, fmt.Errorf("kexec: %d segments, kexec_load takes at most %d", len(segs), segmentMax)
	}
	return segs, nil
}

// kexecSegment is struct kexec_segment (include/uapi/linux/kexec.h).
type kexecSegment struct {
	buf   unsafe.Pointer
	bufsz uintptr
	mem   uintptr
	memsz uintptr
}

// load is kexec_load(2) of page-aligned, disjoint segments.
func load(entry uint64, segs kexec.Segments) error {
	ks := make([]kexecSegment, len(segs))
	for i, s := range segs {
		ks[i] = kexecSegment{bufsz: uintptr(len(s.Buf)), mem: s.Phys.Start, memsz: uintptr(s.Phys.Size)}
		if len(s.Buf) > 0 {
			ks[i].buf = unsafe.Pointer(&s.Buf[0])
		}
	}
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, uintptr(entry), uintptr(len(ks)), uintptr(unsafe.Pointer(&ks[0])), 0, 0, 0)
	runtime.KeepAlive(ks)
	runtime.KeepAlive(segs)
	if errno != 0 {
		hint := ""
		if errno == unix.EPERM {
			hint = " (not root, kexec_load_disabled, or a locked-down kernel)"
		}
		return fmt.Errorf("kexec: kexec_load(entry %#x, %d segments): %w%s", entry, len(ks), errno, hint)
	}
	return nil
}

// FileLoad loads img with kexec_file_load(2): the running kernel reads the
// files and builds boot_params itself, with this machine's e820 table. Use
// it when the source's map equals this one.
func FileLoad(img Image) error {
	k, err := os.Open(img.Kernel)
	if err != nil {
		return fmt.Errorf("kexec: kernel: %w", err)
	}
	defer k.Close()
	rfd, flags := 0, 0
	if img.Initrd == "" {
		flags |= unix.KEXEC_FILE_NO_INITRAMFS
	} else {
		r, err := os.Open(img.Initrd)
		if err != nil {
			return fmt.Errorf("kexec: initrd: %w", err)
		}
		defer r.Close()
		rfd = int(r.Fd())
	}
	if err := unix.KexecFileLoad(int(k.Fd()), rfd, img.Cmdline, flags); err != nil {
		hint := ""
		switch {
		case errors.Is(err, unix.EKEYREJECTED), errors.Is(err, unix.EPERM):
			hint = " (the kernel demands a signed image, or not root)"
		case errors.Is(err, unix.ENOEXEC):
			hint = " (not a kernel this one can load)"
		}
		return fmt.Errorf("kexec: kexec_file_load(%s, %s): %w%s", img.Kernel, orNone(img.Initrd), err, hint)
	}
	return nil
}

// Exec reboots into the loaded kernel: sync, then
// reboot(LINUX_REBOOT_CMD_KEXEC). It returns only on failure.
func Exec() error {
	if b, err := os.ReadFile(kexecLoadedPath); err == nil && strings.TrimSpace(string(b)) == "0" {
		return fmt.Errorf("%w (%s is 0)", ErrNotLoaded, kexecLoadedPath)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		return fmt.Errorf("kexec: reboot(LINUX_REBOOT_CMD_KEXEC): %w", err)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no initrd"
	}
	return s
}

func memoryMap(rs []memmap.Span) kexec.MemoryMap {
	mm := make(kexec.MemoryMap, len(rs))
	for i, r := range rs {
		mm[i] = kexec.TypedRange{Range: kexec.RangeFromInterval(uintptr(r.Start), uintptr(r.End)), Type: kexec.RangeRAM}
	}
	return mm
}
