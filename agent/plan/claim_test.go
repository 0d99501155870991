package plan

import (
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// i440fx is QEMU's PC memory map for ramMB of RAM below 4 GiB.
func i440fx(ramMB uint64) []manifest.E820Entry {
	top := ramMB << 20
	return []manifest.E820Entry{
		{Start: 0, End: 0x9fc00, Type: 1}, {Start: 0x9fc00, End: 0xa0000, Type: 2}, {Start: 0xf0000, End: 0x100000, Type: 2},
		{Start: 0x100000, End: top - 0x21000, Type: 1}, {Start: top - 0x21000, End: top, Type: 2},
		{Start: 0xfffc0000, End: 0x100000000, Type: 2},
	}
}

func TestShield(t *testing.T) {
	windows := func(ramMB uint64) []manifest.PhysRange {
		return []manifest.PhysRange{{Start: 0xa0000, End: 0xc0000}, {Start: ramMB << 20, End: 0xfec00000}, {Start: 0x100000000, End: 0x180000000}}
	}
	for _, tc := range []struct {
		name    string
		edit    func(src, dst *manifest.Manifest)
		ok      bool
		claim   *Claim // nil: none
		modules string
		want    string // in a refusal or a note
	}{
		{"E7: twice the RAM", func(src, dst *manifest.Manifest) {}, true,
			&Claim{Start: 0x20000000, End: 0x40000000, Zone: 1 << 20, Module: "ramoops",
				Params: "mem_address=0x20000000 mem_size=0x20000000 record_size=0x100000 console_size=0 ftrace_size=0 pmsg_size=0 ecc=0"},
			"reed_solomon ramoops scsi_common scsi_mod vmw_pvscsi sd_mod vmxnet3", "claimed first with ramoops (512 zones of 1024 KiB)"},
		{"the same RAM: nothing to claim", func(src, dst *manifest.Manifest) { dst.E820 = i440fx(512) }, true, nil,
			"scsi_common scsi_mod vmw_pvscsi sd_mod vmxnet3", ""},
		{"nothing moves: no rescan, no claim", func(src, dst *manifest.Manifest) {
			w := src.PCIWindows
			*dst = *server()
			dst.E820 = i440fx(1024)
			src.PCIWindows = w
			dst.Disks[0].Movable = false
		}, true, nil, "", ""},
		{"RAM above 4 GiB in the 64-bit window too", func(src, dst *manifest.Manifest) {
			dst.E820 = append(i440fx(1024), manifest.E820Entry{Start: 0x100000000, End: 0x140000000, Type: 1})
		}, false, nil, "", "thaw can shield only one range"},
		{"a pstore backend already registered", func(src, dst *manifest.Manifest) { src.Pstore = "efi_pstore" }, false, nil, "", "backend efi_pstore"},
		{"the window starts in the source's last memory section", func(src, dst *manifest.Manifest) {
			src.E820, src.PCIWindows = i440fx(1000), windows(1000)
		}, false, nil, "", "memory section"},
		{"an older capture without windows", func(src, dst *manifest.Manifest) { src.PCIWindows = nil }, true, nil,
			"scsi_common scsi_mod vmw_pvscsi sd_mod vmxnet3", "recorded no PCI windows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), vmware()
			src.E820, dst.E820 = i440fx(512), i440fx(1024)
			src.E820Digest, dst.E820Digest = "0x1", "0x2"
			src.PCIWindows = windows(512)
			src.PCI[0].Driver = "virtio_net"
			tc.edit(src, dst)
			p := Make(src, dst, aliases(t), Options{Disks: []string{dst.Disks[0].Name}})
			if p.OK != tc.ok {
				t.Fatalf("ok = %v, want %v: %+v", p.OK, tc.ok, p.Refusals)
			}
			if !reflect.DeepEqual(p.Claim, tc.claim) {
				t.Errorf("claim %+v, want %+v", p.Claim, tc.claim)
			}
			text := strings.Join(p.Notes, "\n")
			for _, r := range p.Refusals {
				text += "\n" + r.Reason
				if r.Check != "pciwindow" {
					t.Errorf("refusal %q, want only pciwindow ones", r.Check)
				}
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("notes and refusals do not say %q:\n%s", tc.want, text)
			}
			if tc.ok {
				var mods []string
				for _, f := range p.Modules {
					mods = append(mods, ModuleName(f))
				}
				if got := strings.Join(mods, " "); got != tc.modules {
					t.Errorf("modules %q, want %q", got, tc.modules)
				}
			}
		})
	}
}

func TestZoneFor(t *testing.T) {
	for _, tc := range []struct{ start, length, want uint64 }{
		{0x20000000, 0x20000000, 1 << 20},
		{0x20000000, 0x1ffdf000, 4096},
		{0x20080000, 0x100000, 0x80000},
		{0x20000800, 0x1000, 0},
	} {
		if got := zoneFor(tc.start, tc.length); got != tc.want {
			t.Errorf("zoneFor(%#x, %#x) = %#x, want %#x", tc.start, tc.length, got, tc.want)
		}
	}
}
