//go:build vm

package vmtest

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/harness"
)

// A hibernated busybox guest: its swap disk and what it printed.
type hibernated struct {
	kernel  *harness.Kernel
	initrd  string
	swap    string
	secret  string // "SECRET=… BLOB=…"
	log     kernelLog
	console string
}

var (
	hibMu    sync.Mutex
	hibCache = map[string]*hibernated{}
)

var secretRE = regexp.MustCompile(`THAW-GUEST: SECRET=(\S+ BLOB=\S+)\r?\n`)

// hibernate boots the busybox guest on kernel name and lets it hibernate to
// a fresh swap disk; results are shared between tests.
func hibernate(t *testing.T, name string, nocompress bool) *hibernated {
	t.Helper()
	key := fmt.Sprintf("%s-%v", name, nocompress)
	hibMu.Lock()
	defer hibMu.Unlock()
	if h := hibCache[key]; h != nil {
		return h
	}
	k, err := harness.LoadKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(os.TempDir(), "thaw-vmtest-images")
	os.MkdirAll(dir, 0o755)
	initrd, err := harness.BusyboxGuest(k, dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &hibernated{kernel: k, initrd: initrd, swap: filepath.Join(dir, key+".swap")}
	os.Remove(h.swap)
	if err := os.WriteFile(h.swap, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.swap, 512<<20); err != nil {
		t.Fatal(err)
	}
	app := "guest.mode=hibernate guest.swap=vda"
	if nocompress {
		app += " hibernate=nocompress"
	}
	vm, err := harness.Start(harness.VMConfig{Name: "hibernate-" + key, Kernel: k.Vmlinuz, Initrd: initrd, Append: app,
		Disks: []harness.Disk{{Path: h.swap}}, LogDir: logDir, Timeout: vmTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer failWithConsole(t, vm)
	m, _, err := vm.WaitFor(secretRE, 0, vmTimeout)
	if err != nil {
		t.Fatal(err)
	}
	h.secret = m[1]
	if err := vm.Wait(vmTimeout); err != nil {
		t.Fatalf("hibernating guest: %v", err)
	}
	h.console = vm.Console()
	if strings.Contains(h.console, "RESUMED") {
		t.Fatal("the guest returned from hibernation instead of powering off")
	}
	h.log = parseKernelLog(t, h.console)
	hibCache[key] = h
	return h
}

// busyboxKernels boot the fast format-test guest; inspectKernels adds the
// full flavours, whose images inspect must read the same way.
var (
	busyboxKernels = []string{"debian13-cloud", "debian12-cloud"}
	inspectKernels = []string{"debian13-cloud", "debian12-cloud", "debian13-full", "debian12-full"}
)

// TestInspectKernelImages: thaw inspect reports the release and the page
// counts the hibernating kernel printed, for both kernels and both modes.
func TestInspectKernelImages(t *testing.T) {
	t.Parallel()
	for _, name := range inspectKernels {
		for _, nocompress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nocompress=%v", name, nocompress), func(t *testing.T) {
				h := hibernate(t, name, nocompress)
				r := inspect(t, h.swap)
				if r.Verdict != "resumable" {
					t.Fatalf("verdict %s: %v", r.Verdict, r.Reasons)
				}
				if r.Kernel.Release != h.kernel.Release {
					t.Errorf("release %q, the kernel is %q", r.Kernel.Release, h.kernel.Release)
				}
				if r.Pages.Data != h.log.Copied || r.Pages.Zero != h.log.Zero || r.Pages.Saving != h.log.Saving {
					t.Errorf("inspect: %d data, %d zero, saving %d; kernel log: %d copied, %d zero, saving %d",
						r.Pages.Data, r.Pages.Zero, r.Pages.Saving, h.log.Copied, h.log.Zero, h.log.Saving)
				}
				wantComp := "lzo"
				if nocompress {
					wantComp = "none"
				}
				if r.Compression != wantComp || h.log.Compressed != !nocompress || r.CRC32.Checked == nocompress {
					t.Errorf("compression %s (crc checked %v), want %s; kernel compressed: %v", r.Compression, r.CRC32.Checked, wantComp, h.log.Compressed)
				}
				// The arch header's digest is the kernel's own: crc32 of the
				// firmware e820 table it printed at boot.
				if want := fmt.Sprintf("%#08x", swsusp.E820Checksum(bootE820(t, h.console))); !r.Arch.MagicOK || r.Arch.E820Checksum != want {
					t.Errorf("arch header: magic ok %v, e820 digest %s; the boot map hashes to %s", r.Arch.MagicOK, r.Arch.E820Checksum, want)
				}
				if strings.HasPrefix(name, "debian13") && r.Pages.Zero == 0 {
					t.Errorf("a 6.12 image with no zero pages")
				}
				if strings.HasPrefix(name, "debian12") && r.Pages.Zero != 0 {
					t.Errorf("a 6.1 image with %d zero pages", r.Pages.Zero)
				}
				t.Logf("%s: release %s, %d data + %d zero pages, %d metadata, saving %d",
					name, r.Kernel.Release, r.Pages.Data, r.Pages.Zero, r.Pages.Metadata, r.Pages.Saving)
			})
		}
	}
}

// TestRewriteResume: thaw rewrites a kernel-written image in the other
// compression into partition 2 of a new GPT disk; a fresh VM booting the same
// kernel resumes from there with the same secret and RAM blob.
func TestRewriteResume(t *testing.T) {
	t.Parallel()
	type rcase struct {
		name, to   string
		nocompress bool
	}
	var cases []rcase
	for _, name := range busyboxKernels {
		cases = append(cases, rcase{name, "none", false}, rcase{name, "lzo", true})
	}
	// LZ4 images (SF_COMPRESSION_ALG_LZ4) are read by 6.9+ kernels that can
	// load the lz4 compressor; the guest loads Debian's lz4 modules.
	cases = append(cases, rcase{"debian13-cloud", "lz4", true})
	for _, c := range cases {
		name, to, nocompress := c.name, c.to, c.nocompress
		{
			t.Run(fmt.Sprintf("%s/to=%s", name, to), func(t *testing.T) {
				h := hibernate(t, name, nocompress)
				sum := fileHash(t, h.swap)
				disk := filepath.Join(t.TempDir(), "resume.img")
				if err := harness.MakeGPTDisk(disk, 600, []harness.Part{{Name: "data", SizeMB: 16}, {Name: "resume", SizeMB: 560, Swap: true}}); err != nil {
					t.Fatal(err)
				}
				if _, err := thaw(t, "rewrite", "--from", h.swap, "--to", disk+"#2", "--compress", to); err != nil {
					t.Fatal(err)
				}
				if fileHash(t, h.swap) != sum {
					t.Fatal("rewrite changed its source")
				}
				r := inspect(t, disk+"#2")
				if r.Verdict != "resumable" || r.Compression != to || r.Pages.Data != h.log.Copied {
					t.Fatalf("rewritten image: %+v", r)
				}
				vm, err := harness.Start(harness.VMConfig{Name: fmt.Sprintf("resume-%s-%s", name, to), Kernel: h.kernel.Vmlinuz, Initrd: h.initrd,
					Append: "guest.mode=resume guest.resume=vda2", Disks: []harness.Disk{{Path: disk}}, LogDir: logDir, Timeout: vmTimeout})
				if err != nil {
					t.Fatal(err)
				}
				defer failWithConsole(t, vm)
				want := regexp.MustCompile(`THAW-GUEST: (RESUMED SECRET=\S+ BLOB=\S+|NO-RESUME)\r?\n`)
				m, _, err := vm.WaitFor(want, 0, vmTimeout)
				if err != nil {
					t.Fatal(err)
				}
				if m[1] != "RESUMED SECRET="+h.secret {
					t.Fatalf("guest printed %q, want %q", m[1], "RESUMED SECRET="+h.secret)
				}
				if _, _, err := vm.WaitFor(regexp.MustCompile(`THAW-GUEST: DONE`), 0, vmTimeout); err != nil {
					t.Fatal(err)
				}
				vm.Wait(vmTimeout)
			})
		}
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
