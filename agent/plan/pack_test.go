package plan

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"

	"aead.dev/minisign"
	"github.com/ulikunitz/xz"

	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
)

// ideCtl is an IDE controller that only ata_generic's class alias
// matches.
const ideCtl = "pci:v0000ABCDd00001234sv00000000sd00000000bc01sc01i8a"

// testPack is a pack for the test kernel holding Debian's ata_generic
// (images/driverpack/testdata), which needs libata.
func testPack(t *testing.T, extra ...string) *driverpack.Pack {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ko, err := os.ReadFile("../../images/driverpack/testdata/ata_generic.ko")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := driverpack.NewWriter(&buf, "6.12.0-test")
	if err := w.Add(ko); err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		ko, err := os.ReadFile("../../images/driverpack/testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ko); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(driverpack.BuildInfo{Compiler: "gcc 14"}, "", priv); err != nil {
		t.Fatal(err)
	}
	p, err := driverpack.Read(&buf, pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ideTarget is vmware() with its disk on an IDE controller.
func ideTarget() *manifest.Manifest {
	dst := vmware()
	dst.PCI[0] = manifest.PCIDevice{Address: "0000:00:06.0", Vendor: "0xabcd", Device: "0x1234", Class: "0x010180", Modalias: ideCtl, Driver: "ata_generic"}
	return dst
}

func TestDevicePlanPack(t *testing.T) {
	pack := testPack(t)
	for _, tc := range []struct {
		name    string
		edit    func(src *manifest.Manifest)
		pack    *driverpack.Pack
		check   Check  // a refusal's check; "" : ok
		modules string // module names carried, in order
		want    string // in the disk row's why or fix, or a note
	}{
		{"no pack: the fix names the build", nil, nil, CheckDriver, "vmxnet3",
			"thaw driverpack build --release 6.12.0-test --modules ata_generic --out DIR"},
		{"pack", nil, pack, "", "scsi_common scsi_mod libata ata_generic sd_mod vmxnet3",
			"taints the resumed kernel (E, unsigned module)"},
		{"signatures enforced", func(src *manifest.Manifest) { src.Kernel.SigEnforce = true }, pack, CheckPack, "", "module.sig_enforce"},
		{"sig_enforce on the command line", func(src *manifest.Manifest) { src.Kernel.Cmdline = "ro module.sig_enforce=1 quiet" }, pack, CheckPack, "", "module.sig_enforce"},
		{"lockdown", func(src *manifest.Manifest) { src.Kernel.Lockdown = "integrity" }, pack, CheckPack, "", "lockdown (integrity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), ideTarget()
			src.PCI[0].Driver = "virtio_net"
			if tc.edit != nil {
				tc.edit(src)
			}
			p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}, Pack: tc.pack})
			if got := p.OK; got != (tc.check == "") {
				t.Fatalf("ok = %v: %+v", got, p.Refusals)
			}
			text := strings.Join(p.Notes, " ")
			for _, r := range p.Refusals {
				text += " " + r.Reason + " " + r.Hint
			}
			if tc.check != "" && !strings.Contains(checks(p), string(tc.check)) {
				t.Errorf("no %s refusal: %s", tc.check, checks(p))
			}
			d := row(t, p, "disk", "vda")
			text += " " + d.Why + " " + d.Fix
			if !strings.Contains(text, tc.want) {
				t.Errorf("plan does not say %q:\n%s", tc.want, text)
			}
			if tc.modules != "" {
				var mods []string
				for _, f := range p.Modules {
					mods = append(mods, ModuleName(f))
				}
				if got := strings.Join(mods, " "); got != tc.modules {
					t.Errorf("modules %q, want %q", got, tc.modules)
				}
			}
			if tc.pack == nil {
				return
			}
			if d.Target.Origin != OriginPack || d.Target.Driver != "ata_generic" {
				t.Errorf("disk row target %+v", d.Target)
			}
			if p.Pack == nil || strings.Join(p.Pack.Modules, ",") != "ata_generic" || p.Pack.File != "6.12.0-test.pack" {
				t.Errorf("plan's pack %+v", p.Pack)
			}
			for _, dr := range p.Drivers {
				if dr.Modalias == ideCtl && (dr.Module != "ata_generic" || dr.Pack != "6.12.0-test.pack") {
					t.Errorf("driver row %+v", dr)
				}
			}
		})
	}
}

func checks(p *Plan) string {
	var s []string
	for _, r := range p.Refusals {
		s = append(s, string(r.Check))
	}
	return strings.Join(s, ",")
}

// A module the image kernel has is never taken from the pack.
func TestWithPackKeepsKernelModules(t *testing.T) {
	a := aliases(t)
	pack := testPack(t)
	pack.Header.Modules[0].Name = "libata" // as if the pack carried the kernel's own libata
	w := a.WithPack(pack)
	if w.FromPack("libata") {
		t.Error("libata taken from the pack")
	}
	if a.FromPack("ata_generic") || a.pack != nil {
		t.Error("WithPack changed the kernel's table")
	}
}

// modulesTar is a modules tree tar for the test kernel's modules.dep with
// small ELF-headed files, xz-compressed as Debian 13 ships them.
func modulesTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, line := range strings.Split(depText, "\n") {
		f, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var x bytes.Buffer
		xw, _ := xz.NewWriter(&x)
		xw.Write([]byte("\x7fELF " + ModuleName(f)))
		xw.Close()
		tw.WriteHeader(&tar.Header{Name: "6.12.0-test/" + f, Mode: 0o644, Size: int64(x.Len()), Typeflag: tar.TypeReg})
		tw.Write(x.Bytes())
	}
	tw.Close()
	return buf.Bytes()
}

func TestPayloadWithPack(t *testing.T) {
	pack := testPack(t)
	src := server()
	src.PCI[0].Driver = "virtio_net"
	nonce := [16]byte{1, 2, 3}
	src.Mailbox = &manifest.Mailbox{Nonce: hex.EncodeToString(nonce[:]), PFNs: make([]uint64, 1024)}
	p := Make(src, ideTarget(), aliases(t), Options{Disks: []string{"sda"}, Pack: pack})
	b, err := p.Payload(src, bytes.NewReader(modulesTar(t)), pack)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := mailbox.Parse(b, nonce)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range pl.Modules() {
		names = append(names, m.Name)
		if m.Name == "ata_generic" && !bytes.Equal(m.Data, pack.Module("ata_generic")) {
			t.Error("ata_generic is not the pack's")
		}
	}
	if got := strings.Join(names, " "); got != "scsi_common scsi_mod libata ata_generic sd_mod vmxnet3" {
		t.Errorf("mailbox modules %q", got)
	}
	if _, err := p.Payload(src, bytes.NewReader(modulesTar(t)), nil); err == nil {
		t.Error("a payload without the pack it names")
	}
}

func TestHotAdd(t *testing.T) {
	withHot := testPack(t, "thaw_hotadd.ko")
	for _, tc := range []struct {
		name   string
		ramMB  uint64
		block  uint64
		pack   *driverpack.Pack
		ranges string // the hot-add's params; "" : none
		unused uint64 // MiB
		note   string
	}{
		{"no pack", 1024, 128 << 20, nil, "", 512, "a driver pack for 6.12.0-test (thaw driverpack build) would add 512 MiB"},
		{"pack without thaw_hotadd", 1024, 128 << 20, testPack(t), "", 512, "would add 512 MiB"},
		{"pack", 1024, 128 << 20, withHot, "windows=20000000-40000000 ranges=20000000-40000000", 0, "adds 512 MiB of this machine's RAM"},
		{"partial blocks", 1000, 128 << 20, withHot, "windows=20000000-3e800000 ranges=20000000-38000000", 0, "104 MiB in partial blocks stay unused"},
		{"no block size recorded", 1024, 0, withHot, "", 0, "recorded no memory block size"},
		{"same RAM", 512, 128 << 20, withHot, "", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), ideTarget()
			src.PCI[0].Driver = "virtio_net"
			src.MemoryBlock = tc.block
			src.PCIWindows = []manifest.PhysRange{{Start: 0x20000000, End: 0xfec00000}}
			dst.E820 = machine(tc.ramMB).E820
			p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}, Pack: tc.pack})
			got := ""
			if p.HotAdd != nil {
				got = p.HotAdd.Params
				if p.Modules[0] != PackFile(HotAddModule) {
					t.Errorf("modules %v: thaw_hotadd is not first", p.Modules)
				}
			}
			if got != tc.ranges || p.UnusedRAM>>20 != tc.unused {
				t.Errorf("hot-add %q, unused %d MiB; want %q, %d MiB", got, p.UnusedRAM>>20, tc.ranges, tc.unused)
			}
			if notes := strings.Join(p.Notes, "\n"); !strings.Contains(notes, tc.note) {
				t.Errorf("notes do not say %q:\n%s", tc.note, notes)
			}
		})
	}
}

func TestCPUs(t *testing.T) {
	withHot := testPack(t, "thaw_hotadd.ko")
	for _, tc := range []struct {
		name     string
		release  string
		possible int
		pack     *driverpack.Pack
		cpus     int // CPUs the plan hot-adds
		note     string
	}{
		{"6.1 no room", "6.1.0-50-cloud-amd64", 1, withHot, 0, "resumes with 1 of this machine's 2 CPUs: the image kernel's possible CPUs (1) were fixed when it booted on the source; on the source, thaw prepare --cpus 2"},
		{"6.12 no room", "6.12.117+deb13-cloud-amd64", 1, withHot, 0, "maxcpus"},
		{"room, pack", "6.1.0-50-cloud-amd64", 2, withHot, 1, "resumes with 2 of this machine's 2 CPUs: thaw_hotadd hot-adds 1 through ACPI"},
		{"room on 6.12, pack", "6.12.117+deb13-cloud-amd64", 4, withHot, 1, "resumes with 2 of this machine's 2 CPUs"},
		{"room, no pack", "6.12.117+deb13-cloud-amd64", 2, nil, 0, "resumes with 1 of this machine's 2 CPUs: a driver pack for 6.12.0-test (thaw driverpack build) would bring 1 more online"},
		{"room, pack without thaw_hotadd", "6.12.117+deb13-cloud-amd64", 2, testPack(t), 0, "would bring 1 more online"},
		{"not recorded", "6.12.117+deb13-cloud-amd64", 0, withHot, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), vmware()
			src.Kernel.Release, src.CPU.Possible, src.CPU.Count, dst.CPU.Count = tc.release, tc.possible, 1, 2
			src.PCI[0].Driver = "virtio_net"
			p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}, Pack: tc.pack})
			notes := strings.Join(p.Notes, "\n")
			if tc.note == "" && strings.Contains(notes, "CPUs") || !strings.Contains(notes, tc.note) {
				t.Errorf("notes\n%s\nwant %q", notes, tc.note)
			}
			got := 0
			if p.HotAdd != nil {
				got = p.HotAdd.CPUs
				if !strings.Contains(p.HotAdd.Params, "cpus=1") || p.Modules[0] != PackFile(HotAddModule) {
					t.Errorf("params %q, modules %v", p.HotAdd.Params, p.Modules)
				}
			}
			if got != tc.cpus {
				t.Errorf("hot-adds %d CPUs, want %d", got, tc.cpus)
			}
		})
	}
}

// A moving disk with root and swap on plain partitions: refused without a
// pack's thaw_redirect (naming the pack), moved with one (the bios held
// from the resume), refused on a source disk driver it is not proven for.
func TestPlainDiskRedirect(t *testing.T) {
	plain := func(src *manifest.Manifest) {
		d := &src.Disks[0]
		d.Driver, d.Movable = "virtio_blk", false
		src.DM = nil
		src.Mounts = []manifest.Mount{{Target: "/", Source: "/dev/vda1", FSType: "ext4", Dev: "254:1"}}
		src.Swaps = []manifest.Swap{{Path: "/dev/vda2", Type: "partition"}}
	}
	for _, tc := range []struct {
		name   string
		edit   func(src *manifest.Manifest)
		pack   []string // the pack's modules beside ata_generic; nil: no pack
		ok     bool
		plainD string // PlainDisks
		want   string // in the disk row's why or fix
	}{
		{"no pack: thaw prepare or a pack", plain, nil, false, "vda", "thaw driverpack build --release 6.1.0-50-cloud-amd64 --out DIR"},
		{"a pack without thaw_redirect", plain, []string{"thaw_hotadd.ko"}, false, "vda", "its thaw_redirect sends the old disk's I/O"},
		{"thaw_redirect", plain, []string{"thaw_redirect.ko"}, true, "", "thaw_redirect sends its bios to sda"},
		{"a SCSI source disk: not proven", func(src *manifest.Manifest) { plain(src); src.Disks[0].Driver = "sd" }, []string{"thaw_redirect.ko"}, false, "", "proven only for a source disk on virtio_blk"},
		{"on LVM: moved by its tables, no thaw_redirect", nil, []string{"thaw_redirect.ko"}, true, "", "dm vg0-root,vg0-swap re-pointed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), vmware()
			src.Kernel.Release = "6.1.0-50-cloud-amd64"
			if tc.edit != nil {
				tc.edit(src)
			}
			a := aliases(t)
			a.Release = src.Kernel.Release
			var pk *driverpack.Pack
			if tc.pack != nil {
				pk = testPack(t, tc.pack...)
			}
			p := Make(src, dst, a, Options{Disks: []string{"sda"}, Pack: pk})
			d := row(t, p, "disk", "vda")
			if p.OK != tc.ok {
				t.Fatalf("ok = %v, want %v: %+v", p.OK, tc.ok, p.Refusals)
			}
			if !tc.ok && !strings.Contains(checks(p), string(CheckDisk)) {
				t.Errorf("no disk refusal: %s", checks(p))
			}
			if got := strings.Join(p.PlainDisks, ","); got != tc.plainD {
				t.Errorf("plain disks %q, want %q", got, tc.plainD)
			}
			if !strings.Contains(d.Why+" "+d.Fix, tc.want) {
				t.Errorf("disk row does not say %q:\n%s\n%s", tc.want, d.Why, d.Fix)
			}
			redirected := tc.ok && tc.edit != nil
			if got := d.Via == RedirectModule; got != redirected {
				t.Errorf("via %q", d.Via)
			}
			if !redirected {
				if p.Redirect != nil || slices.Contains(p.Modules, PackFile(RedirectModule)) {
					t.Errorf("thaw_redirect planned: %+v %v", p.Redirect, p.Modules)
				}
				return
			}
			if d.Action != Redirect || p.Redirect == nil || p.Redirect.Params != "hold=254:0" || !slices.Contains(p.Modules, PackFile(RedirectModule)) {
				t.Errorf("row %s, redirect %+v, modules %v", d.Action, p.Redirect, p.Modules)
			}
			if p.Pack == nil || !slices.Contains(p.Pack.Modules, RedirectModule) {
				t.Errorf("the plan's pack does not name thaw_redirect: %+v", p.Pack)
			}
		})
	}
}
