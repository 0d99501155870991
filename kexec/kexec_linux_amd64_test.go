package kexec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
)

// bz describes a minimal bzImage for tinyKernel.
type bz struct {
	proto    uint16 // boot protocol version, 0x020f if 0
	notReloc bool   // relocatable_kernel 0
	comp     string // gzip (default), zstd, xz, lzma (left to u-root's decoder)
	lie      int    // added to the size appended to the payload
	shared   bool   // the segments share a page
}

// tinyKernel writes a minimal bzImage: a real-mode header as the kernel's
// and a compressed payload holding a 64-bit ELF whose two PT_LOAD segments
// sit at 16 MiB and 18 MiB (the second with bss, its size not whole pages;
// or, shared, right after the first in its last page) and whose entry is at
// 16 MiB, as a vmlinux's.
func tinyKernel(t *testing.T, k bz) string {
	t.Helper()
	le := binary.LittleEndian
	type prog struct{ off, paddr, filesz, memsz uint64 }
	progs := []prog{{0x1000, 0x1000000, 0x2000, 0x2000}, {0x3000, 0x1200000, 0x800, 0x4321}}
	if k.shared {
		progs = []prog{{0x1000, 0x1000000, 0x2100, 0x2100}, {0x3100, 0x1002100, 0x800, 0x4321}}
	}
	elf := make([]byte, 0x4000)
	copy(elf, "\x7fELF\x02\x01\x01")
	le.PutUint16(elf[16:], 2)  // ET_EXEC
	le.PutUint16(elf[18:], 62) // EM_X86_64
	le.PutUint32(elf[20:], 1)
	le.PutUint64(elf[24:], 0x1000000) // e_entry
	le.PutUint64(elf[32:], 64)        // e_phoff
	le.PutUint16(elf[52:], 64)        // e_ehsize
	le.PutUint16(elf[54:], 56)        // e_phentsize
	le.PutUint16(elf[56:], uint16(len(progs)))
	le.PutUint16(elf[58:], 64) // e_shentsize
	for i, p := range progs {
		ph := elf[64+56*i:]
		le.PutUint32(ph[0:], 1) // PT_LOAD
		le.PutUint32(ph[4:], 7)
		le.PutUint64(ph[8:], p.off)
		le.PutUint64(ph[16:], 0xffffffff80000000+p.paddr)
		le.PutUint64(ph[24:], p.paddr)
		le.PutUint64(ph[32:], p.filesz)
		le.PutUint64(ph[40:], p.memsz)
		le.PutUint64(ph[48:], 0x200000)
		for j := range p.filesz {
			elf[p.off+j] = byte(i + 1)
		}
	}

	// The payload as arch/x86/boot/compressed/Makefile makes it: the
	// compressed ELF, then (but for gzip, whose trailer ends with it) the
	// size, 4 bytes little-endian.
	var z bytes.Buffer
	var w io.WriteCloser
	var err error
	switch k.comp {
	case "", "gzip":
		w = gzip.NewWriter(&z)
	case "zstd":
		w, err = zstd.NewWriter(&z)
	case "xz":
		w, err = xz.NewWriter(&z)
	case "lzma":
		w, err = lzma.NewWriter(&z)
	default:
		t.Fatalf("compression %q", k.comp)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(elf)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if k.comp != "" && k.comp != "gzip" {
		binary.Write(&z, le, uint32(len(elf)))
	}
	payload := z.Bytes()
	size := le.Uint32(payload[len(payload)-4:])
	le.PutUint32(payload[len(payload)-4:], uint32(int(size)+k.lie))

	const setupSects = 1
	head := make([]byte, (setupSects+1)*512)
	copy(head, "MZ") // as an EFI-stub kernel starts
	head[0x1f1] = setupSects
	le.PutUint16(head[0x1fe:], 0xaa55)
	copy(head[0x202:], "HdrS")
	if k.proto == 0 {
		k.proto = 0x020f
	}
	le.PutUint16(head[0x206:], k.proto)
	head[0x211] = 1                        // loadflags: LOADED_HIGH
	le.PutUint32(head[0x22c:], 0x7fffffff) // initrd_addr_max
	le.PutUint32(head[0x230:], 0x200000)   // kernel_alignment
	if !k.notReloc {
		head[0x234] = 1 // relocatable_kernel
	}
	le.PutUint32(head[0x238:], 2047)                 // cmdline_size
	le.PutUint32(head[0x248:], 0x40)                 // payload_offset
	le.PutUint32(head[0x24c:], uint32(len(payload))) // payload_length
	img := append(head, make([]byte, 0x40)...)
	img = append(img, payload...)
	img = append(img, 0, 0, 0, 0) // CRC
	p := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeBootParams writes a boot_params page as the running kernel's could
// be: this machine's e820 table, a setup_data chain, ext_* fields and EFI
// information set, an old initrd and command line.
func fakeBootParams(t *testing.T, table []manifest.E820Entry) (string, []byte) {
	t.Helper()
	le := binary.LittleEndian
	bp := make([]byte, BootParamsSize)
	le.PutUint64(bp[0x70:], 0xf5a30)         // acpi_rsdp_addr
	le.PutUint32(bp[0xc0:], 1)               // ext_ramdisk_image
	le.PutUint32(bp[0xc4:], 2)               // ext_ramdisk_size
	le.PutUint32(bp[0xc8:], 3)               // ext_cmd_line_ptr
	copy(bp[0x1c0:], "EL64\x18\x9e\xfb\x7e") // efi_info
	bp[0x1ef] = 0xff                         // sentinel
	bp[0x1f1] = 27
	copy(bp[0x202:], "HdrS")
	le.PutUint16(bp[0x206:], 0x020f)
	le.PutUint32(bp[0x218:], 0x1f000000) // ramdisk_image
	le.PutUint32(bp[0x21c:], 0x800000)   // ramdisk_size
	le.PutUint32(bp[0x228:], 0x20000)    // cmd_line_ptr
	le.PutUint64(bp[0x250:], 0x1ffd0010) // setup_data
	if err := EncodeE820(bp, table); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "boot_params")
	if err := os.WriteFile(p, bp, 0o444); err != nil {
		t.Fatal(err)
	}
	return p, bp
}

// debianKernel is the Debian 13 kernel `make kernels` fetches, or "".
func debianKernel(t *testing.T, name string) string {
	cache := os.Getenv("THAW_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "build", "cache")
	}
	p := filepath.Join(cache, "kernels", name, "vmlinuz")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func writeFile(t *testing.T, name string, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, bytes.Repeat([]byte{0x07}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// inRAM reports whether [start, end) is RAM in m.
func inRAM(m []manifest.E820Entry, start, end uint64) bool {
	return inside(memmap.RAM(m), start, end)
}

func TestLoadWithE820DryRun(t *testing.T) {
	type kernel struct {
		name, path string
		debian     bool
	}
	kernels := []kernel{
		{name: "minimal bzImage, gzip", path: tinyKernel(t, bz{})},
		{name: "minimal bzImage, zstd", path: tinyKernel(t, bz{comp: "zstd"})},
		{name: "minimal bzImage, xz", path: tinyKernel(t, bz{comp: "xz"})},
		{name: "minimal bzImage, lzma (u-root's decoder)", path: tinyKernel(t, bz{comp: "lzma"})},
		{name: "minimal bzImage, segments sharing a page", path: tinyKernel(t, bz{shared: true})},
	}
	for _, k := range []string{"debian13-full", "debian12-full"} {
		kernels = append(kernels, kernel{name: k, path: debianKernel(t, k), debian: true})
	}
	initrd := writeFile(t, "initrd", 5<<20+123)
	maps := []struct {
		name     string
		src, dst []manifest.E820Entry
	}{
		{"256 MiB image on 512 MiB", seabios256, seabios512},
		{"224 MiB image on 384 MiB", seabios224, seabios384},
		{"virtio-blk image on AHCI, same RAM", seabios(0x1ffdd000), seabios(0x1ffdf000)},
		{"512 MiB image on a 25 GiB cloud VM", seabios512, readTestMemmap(t, "memmap-cloudvm")},
	}
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			if k.path == "" {
				t.Skipf("no %s kernel under $THAW_CACHE or build/cache (run `make kernels`); the minimal bzImage case covers the rest", k.name)
			}
			for i, m := range maps {
				if i%2 == 1 && k.debian {
					continue // each load decompresses the kernel: two maps will do
				}
				t.Run(m.name, func(t *testing.T) {
					bpPath, orig := fakeBootParams(t, m.dst)
					img := Image{Kernel: k.path, Initrd: initrd, Cmdline: "console=ttyS0 resume=/dev/vdb panic=-1"}
					var logged strings.Builder
					l, err := LoadWithE820(img, m.src, Options{
						DryRun:         true,
						BootParamsPath: bpPath,
						MemmapDir:      writeMemmap(t, m.dst),
						Logf:           func(f string, a ...any) { fmt.Fprintf(&logged, f+"\n", a...) },
					})
					if err != nil {
						t.Fatalf("LoadWithE820: %v", err)
					}
					checkLoaded(t, l, img, m.src, m.dst, orig)
					if !strings.Contains(logged.String(), "boot_params at") {
						t.Errorf("Logf not told:\n%s", logged.String())
					}
				})
			}
		})
	}
}

func checkLoaded(t *testing.T, l *Loaded, img Image, src, dst []manifest.E820Entry, orig []byte) {
	t.Helper()
	le := binary.LittleEndian
	// The e820 table written is the source's, exactly.
	if !reflect.DeepEqual(l.E820, src) {
		t.Errorf("e820 written:\n got %v\nwant %v", l.E820, src)
	}
	got, err := DecodeE820(l.Params)
	if err != nil || !reflect.DeepEqual(got, src) {
		t.Errorf("e820 in the page: %v, %v", got, err)
	}
	// Every segment lies in RAM of both maps, whole pages, no overlaps.
	names := map[string]int{}
	var prevEnd uint64
	for _, s := range l.Segments {
		names[s.Name]++
		if s.Start%4096 != 0 || s.End%4096 != 0 || s.End <= s.Start || s.Size > s.End-s.Start {
			t.Errorf("segment %s [%#x-%#x) %d bytes: not whole pages", s.Name, s.Start, s.End, s.Size)
		}
		if !inRAM(src, s.Start, s.End) || !inRAM(dst, s.Start, s.End) {
			t.Errorf("segment %s [%#x-%#x) is not RAM in both maps", s.Name, s.Start, s.End)
		}
		if s.Start < prevEnd {
			t.Errorf("segment %s at %#x overlaps the previous one (ends %#x)", s.Name, s.Start, prevEnd)
		}
		prevEnd = s.End
	}
	for _, u := range l.Usable {
		if !inRAM(src, u.Start, u.End) || !inRAM(dst, u.Start, u.End) {
			t.Errorf("usable [%#x-%#x) is not RAM in both maps", u.Start, u.End)
		}
	}
	for _, n := range []string{"kernel", "initrd", "cmdline", "boot_params", "purgatory"} {
		if names[n] == 0 {
			t.Errorf("no %s segment in %v", n, l.Segments)
		}
	}
	seg := func(name string, at uint64) *Segment {
		for i, s := range l.Segments {
			if s.Name == name && s.Start == at {
				return &l.Segments[i]
			}
		}
		t.Errorf("no %s segment at %#x", name, at)
		return &Segment{}
	}
	rd, _ := os.Stat(img.Initrd)
	if s := seg("initrd", l.InitrdStart); s.Size != uint64(rd.Size()) || l.InitrdSize != uint64(rd.Size()) {
		t.Errorf("initrd segment %+v, Loaded.InitrdSize %d, file %d bytes", s, l.InitrdSize, rd.Size())
	}
	if s := seg("cmdline", l.CmdLine); s.Size != uint64(len(img.Cmdline)+1) {
		t.Errorf("cmdline segment %+v for a %d-byte command line", s, len(img.Cmdline))
	}
	seg("boot_params", l.BootParams)
	if l.Entry != 0x3000 {
		t.Errorf("entry %#x, want the purgatory's 0x3000", l.Entry)
	}
	if !inRAM(src, l.KernelEntry, l.KernelEntry+1) {
		t.Errorf("kernel entry %#x not in RAM", l.KernelEntry)
	}

	// boot_params: the running kernel's page with the fields LoadWithE820 owns.
	bp := l.Params
	for _, f := range []struct {
		name string
		off  int
		want uint32
	}{
		{"ramdisk_image", 0x218, uint32(l.InitrdStart)},
		{"ramdisk_size", 0x21c, uint32(rd.Size())},
		{"cmd_line_ptr", 0x228, uint32(l.CmdLine)},
		{"ext_ramdisk_image", 0xc0, 0},
		{"ext_ramdisk_size", 0xc4, 0},
		{"ext_cmd_line_ptr", 0xc8, 0},
	} {
		if got := le.Uint32(bp[f.off:]); got != f.want {
			t.Errorf("boot_params %s (%#x) = %#x, want %#x", f.name, f.off, got, f.want)
		}
	}
	if le.Uint64(bp[0x250:]) != 0 {
		t.Errorf("setup_data = %#x, want 0", le.Uint64(bp[0x250:]))
	}
	if !bytes.Equal(bp[0x1c0:0x1e0], make([]byte, 32)) {
		t.Error("efi_info not zeroed")
	}
	for _, r := range [][2]int{{0, 0xc0}, {0xcc, 0x1c0}, {0x1f0, 0x218}, {0x220, 0x228}, {0x22c, 0x238}, {0x23c, 0x250}, {0x258, 0x2d0}, {0xcd0, BootParamsSize}} {
		if !bytes.Equal(bp[r[0]:r[1]], orig[r[0]:r[1]]) {
			t.Errorf("boot_params %#x-%#x differ from the running kernel's", r[0], r[1])
		}
	}
}

func TestLoadWithE820Refusals(t *testing.T) {
	kernel := tinyKernel(t, bz{})
	many := make([]manifest.E820Entry, E820Max+1)
	for i := range many {
		many[i] = manifest.E820Entry{Start: uint64(i) << 20, End: uint64(i+1) << 20, Type: 1}
	}
	// A target whose RAM has a hole where the kernel is linked (16 MiB).
	holey := []manifest.E820Entry{
		{Start: 0, End: 0x9fc00, Type: 1},
		{Start: 0x100000, End: 0x1000000, Type: 1},
		{Start: 0x1000000, End: 0x1100000, Type: 2},
		{Start: 0x1100000, End: 0x40000000, Type: 1},
	}
	// 24 MiB of RAM: 15 below the kernel, 6 above.
	small := []manifest.E820Entry{{Start: 0, End: 0x9fc00, Type: 1}, {Start: 0x100000, End: 0x1800000, Type: 1}}
	tests := []struct {
		name     string
		kernel   string
		initrd   string
		src, dst []manifest.E820Entry
		is       error
		fit      *FitError
		say      string
	}{
		{
			name: "512 MiB image on 256 MiB", kernel: kernel, src: seabios512, dst: seabios256,
			fit: &FitError{Range: seabios512[3], Start: 0x0ffdd000, End: 0x1ffdd000},
			say: "[0x100000-0x1ffdcfff]: [0xffdd000-0x1ffdcfff] is not RAM on the target",
		},
		{
			name: "virtio-blk image on NVMe, same RAM", kernel: kernel, src: seabios(0x1ffdd000), dst: seabios(0x1ffd7000),
			fit: &FitError{Range: seabios512[3], Start: 0x1ffd7000, End: 0x1ffdd000},
		},
		{name: "129 entries", kernel: kernel, src: many, dst: seabios512, is: ErrTooManyEntries, say: "129"},
		{name: "not relocatable", kernel: tinyKernel(t, bz{notReloc: true}), src: seabios256, dst: seabios512, is: ErrKernel, say: "not relocatable"},
		{name: "protocol 2.04", kernel: tinyKernel(t, bz{proto: 0x0204}), src: seabios256, dst: seabios512, is: ErrKernel, say: "2.04"},
		{name: "not a bzImage", kernel: writeFile(t, "notakernel", 8192), src: seabios256, dst: seabios512, is: ErrKernel, say: "not a bzImage"},
		{name: "kernel address not RAM on the target", kernel: kernel, src: seabios256, dst: holey, fit: &FitError{Range: seabios256[3], Start: 0x1000000, End: 0x1100000}},
		{name: "kernel address not RAM in the source", kernel: kernel, src: holey, dst: readTestMemmap(t, "memmap-cloudvm"), is: ErrNoRoom, say: "no room in RAM of both maps: " + kernel + ": kernel segment [0x1000000-0x1001fff]"},
		{name: "payload shorter than announced", kernel: tinyKernel(t, bz{comp: "zstd", lie: 100}), src: seabios256, dst: seabios512, is: ErrKernel, say: "decompressing"},
		{name: "payload longer than announced", kernel: tinyKernel(t, bz{comp: "xz", lie: -100}), src: seabios256, dst: seabios512, is: ErrKernel, say: "decompressing"},
		{name: "initrd larger than the RAM", kernel: kernel, initrd: writeFile(t, "big", 20<<20), src: small, dst: seabios512, is: ErrNoRoom, say: "initrd (20971520 bytes)"},
		{name: "missing initrd", kernel: kernel, initrd: "/nonexistent/initrd", src: seabios256, dst: seabios512, is: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bpPath, _ := fakeBootParams(t, tt.dst)
			_, err := LoadWithE820(Image{Kernel: tt.kernel, Initrd: tt.initrd, Cmdline: "quiet"}, tt.src,
				Options{DryRun: true, BootParamsPath: bpPath, MemmapDir: writeMemmap(t, tt.dst)})
			if err == nil {
				t.Fatal("LoadWithE820: no error")
			}
			if tt.fit != nil {
				var fe *FitError
				if !errors.As(err, &fe) || *fe != *tt.fit {
					t.Fatalf("LoadWithE820: %v, want %+v", err, *tt.fit)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("LoadWithE820: %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.say) {
				t.Errorf("LoadWithE820: %q does not say %q", err, tt.say)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

func TestLoadWithE820KeepEFI(t *testing.T) {
	bpPath, orig := fakeBootParams(t, seabios512)
	l, err := LoadWithE820(Image{Kernel: tinyKernel(t, bz{})}, seabios256,
		Options{DryRun: true, KeepEFI: true, BootParamsPath: bpPath, MemmapDir: writeMemmap(t, seabios512)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Params[0x1c0:0x1e0], orig[0x1c0:0x1e0]) {
		t.Error("KeepEFI: efi_info changed")
	}
	// Without an initrd the ramdisk fields say none.
	if l.InitrdStart != 0 || binary.LittleEndian.Uint64(l.Params[0x218:]) != 0 {
		t.Errorf("no initrd: InitrdStart %#x, ramdisk_image/size % x", l.InitrdStart, l.Params[0x218:0x220])
	}
}

// TestLoadWithE820Memory bounds what loading Debian's kernels allocates: the
// decompressed kernel once, its segments, little else (u-root's decoder
// allocated 369 MiB for the Debian 13 kernel, 265 MiB peak RSS).
func TestLoadWithE820Memory(t *testing.T) {
	for _, name := range []string{"debian13-full", "debian12-full"} {
		t.Run(name, func(t *testing.T) {
			k := debianKernel(t, name)
			if k == "" {
				t.Skipf("no %s kernel under $THAW_CACHE or build/cache (run `make kernels`)", name)
			}
			bpPath, _ := fakeBootParams(t, seabios512)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			l, err := LoadWithE820(Image{Kernel: k}, seabios256,
				Options{DryRun: true, BootParamsPath: bpPath, MemmapDir: writeMemmap(t, seabios512)})
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			var segs uint64
			for _, s := range l.Segments {
				segs += s.Size
			}
			fi, _ := os.Stat(k)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("vmlinuz %d MiB, segments %d MiB; allocated %d MiB; heap in use after %d MiB; max RSS of the test process %d MiB",
				fi.Size()>>20, segs>>20, alloc>>20, after.HeapInuse>>20, ru.Maxrss>>10)
			if limit := 3*segs + 2*uint64(fi.Size()); alloc > limit {
				t.Errorf("allocated %d MiB, more than %d MiB", alloc>>20, limit>>20)
			}
			runtime.KeepAlive(l)
		})
	}
}
