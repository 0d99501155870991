package plan

import (
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

const aliasText = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v000015ADd000007C0sv*sd*bc*sc*i* vmw_pvscsi
alias pci:v000015ADd000007B0sv*sd*bc*sc*i* vmxnet3
`

const depText = `kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/virtio/virtio_ring.ko.xz:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz:
kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/libata.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/vmw_pvscsi.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/net/vmxnet3/vmxnet3.ko.xz:
kernel/fs/pstore/ramoops.ko.xz: kernel/lib/reed_solomon/reed_solomon.ko.xz
kernel/lib/reed_solomon/reed_solomon.ko.xz:
`

func aliases(t *testing.T) *Aliases {
	a := &Aliases{Release: "6.12.0-test"}
	if err := a.ParseModulesAlias(strings.NewReader(aliasText)); err != nil {
		t.Fatal(err)
	}
	if err := a.ParseModulesDep(strings.NewReader(depText)); err != nil {
		t.Fatal(err)
	}
	a.ParseBuiltinModinfo([]byte("nvme.alias=pci:v*d*sv*sd*bc01sc08i02*\x00nvme.license=GPL\x00virtio_pci.alias=virtio:d*v*\x00"))
	return a
}

func machine(ramMB uint64, flags ...string) *manifest.Manifest {
	return &manifest.Manifest{
		CPU:        manifest.CPU{Vendor: "GenuineIntel", Name: "test", Flags: flags},
		E820:       []manifest.E820Entry{{Start: 0, End: 0x9fc00, Type: 1}, {Start: 0x100000, End: ramMB << 20, Type: 1}},
		E820Digest: "0x1",
		Disks:      []manifest.Disk{{Name: "vda", Size: 4 << 30, PCI: "0000:00:04.0", Driver: "virtio_blk"}},
		PCI: []manifest.PCIDevice{
			{Address: "0000:00:04.0", Class: "0x010000", Modalias: "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"},
			{Address: "0000:00:03.0", Class: "0x020000", Modalias: "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"},
		},
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(src, dst *manifest.Manifest, opt *Options)
		ok     bool
		want   string // in a refusal (or a note when ok)
		resume string
	}{
		{"same machine", func(src, dst *manifest.Manifest, opt *Options) {}, true, "", "direct"},
		{"more RAM", func(src, dst *manifest.Manifest, opt *Options) {
			dst.E820[1].End = 1024 << 20
			dst.E820Digest = "0x2"
		}, true, "", "kexec"},
		{"less RAM", func(src, dst *manifest.Manifest, opt *Options) {
			dst.E820[1].End = 256 << 20
			dst.E820Digest = "0x2"
		}, false, "is not RAM on this machine", "kexec"},
		{"missing CPU flag", func(src, dst *manifest.Manifest, opt *Options) { dst.CPU.Flags = []string{"sse2"} }, false, "lacks 1 feature(s) the image kernel uses: avx2", "direct"},
		{"topology flags only (a source with room for more CPUs)", func(src, dst *manifest.Manifest, opt *Options) {
			src.CPU.Flags = append(src.CPU.Flags, "ht", "cmp_legacy")
		}, true, "", "direct"},
		{"disk too small", func(src, dst *manifest.Manifest, opt *Options) { dst.Disks[0].Size = 1 << 30 }, false, "no disk here holds source disk vda", "direct"},
		{"ambiguous disks", func(src, dst *manifest.Manifest, opt *Options) {
			dst.Disks = append(dst.Disks, manifest.Disk{Name: "vdb", Size: 8 << 30, PCI: "0000:00:05.0", Driver: "virtio_blk"})
		}, false, "could go to", "direct"},
		{"explicit disk", func(src, dst *manifest.Manifest, opt *Options) {
			dst.Disks = append(dst.Disks, manifest.Disk{Name: "vdb", Size: 8 << 30, PCI: "0000:00:04.0", Driver: "virtio_blk"})
			opt.Disks = []string{"/dev/vdb"}
		}, true, "", "direct"},
		{"stick not chosen", func(src, dst *manifest.Manifest, opt *Options) {
			dst.Disks = append(dst.Disks, manifest.Disk{Name: "sda", Size: 8 << 30, Medium: "thaw stick"})
		}, true, "", "direct"},
		{"stick named", func(src, dst *manifest.Manifest, opt *Options) {
			dst.Disks = append(dst.Disks, manifest.Disk{Name: "sda", Size: 8 << 30, Medium: "thaw stick"})
			opt.Disks = []string{"sda"}
		}, false, "MEDIUM thaw.disk= names sda, the thaw stick this agent runs from / name the server's target disk instead (this machine's disks: vda (4096 MiB))", "direct"},
		{"data without consent", func(src, dst *manifest.Manifest, opt *Options) { opt.HasData = nil }, false, "holds data and was not named", "direct"},
		{"controller moved", func(src, dst *manifest.Manifest, opt *Options) {
			dst.Disks[0].PCI, dst.Disks[0].Driver = "0000:00:1f.2", "ahci"
			dst.PCI = append(dst.PCI, manifest.PCIDevice{Address: "0000:00:1f.2", Class: "0x010601", Modalias: "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"})
		}, false, "run `thaw prepare` on the source", "direct"},
		{"no driver for the disk controller", func(src, dst *manifest.Manifest, opt *Options) {
			dst.PCI[0].Modalias = "pci:v00001000d00000012sv00000000sd00000000bc01sc00i00"
		}, false, "has no driver for the disk controller 0000:00:04.0", "direct"},
		{"export on another memory map", func(src, dst *manifest.Manifest, opt *Options) {
			src.E820 = nil
			dst.E820Digest = "0x2"
		}, false, "records no memory map (an export)", "kexec"},
		{"export on the same memory map", func(src, dst *manifest.Manifest, opt *Options) { src.E820 = nil }, true, "", "direct"},
		{"built-in driver bound on the source", func(src, dst *manifest.Manifest, opt *Options) {
			m := "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00"
			src.PCI[0].Modalias, src.PCI[0].Driver, dst.PCI[0].Modalias = m, "virtio_blk", m
		}, true, "", "direct"},
		{"BIOS source on a UEFI machine", func(src, dst *manifest.Manifest, opt *Options) { src.Firmware, dst.Firmware = "bios", "uefi" }, false, "captured on a machine booted by BIOS, this machine booted by UEFI", "direct"},
		{"firmware not known", func(src, dst *manifest.Manifest, opt *Options) { dst.Firmware = "uefi" }, true, "", "direct"},
		{"UEFI on UEFI", func(src, dst *manifest.Manifest, opt *Options) { src.Firmware, dst.Firmware = "uefi", "uefi" }, true, "", "direct"},
		{"no driver for the NIC", func(src, dst *manifest.Manifest, opt *Options) {
			dst.PCI[1].Modalias = "pci:v000010ECd00008139sv00000000sd00000000bc02sc00i00"
		}, true, "no driver for the NIC 0000:00:03.0", "direct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := machine(512, "sse2", "avx2"), machine(512, "sse2", "avx2", "avx512f")
			opt := Options{HasData: func(string) bool { return false }}
			tc.edit(src, dst, &opt)
			p := Make(src, dst, aliases(t), opt)
			if p.OK != tc.ok {
				t.Fatalf("ok = %v, want %v: %+v", p.OK, tc.ok, p.Refusals)
			}
			var text []string
			for _, r := range p.Refusals {
				text = append(text, strings.ToUpper(string(r.Check))+" "+r.Reason+" / "+r.Hint)
			}
			text = append(text, p.Notes...)
			if tc.want != "" && !strings.Contains(strings.Join(text, "\n"), tc.want) {
				t.Errorf("plan does not say %q:\n%s", tc.want, strings.Join(text, "\n"))
			}
			if p.Resume != tc.resume {
				t.Errorf("resume %s, want %s", p.Resume, tc.resume)
			}
			for _, d := range p.Drivers {
				if d.PCI == "0000:00:04.0" && tc.ok && d.Module != "virtio_blk" {
					t.Errorf("driver table: %+v", d)
				}
			}
		})
	}
}

// The memory check applies images/memmap's rule: RAM ranges here that
// touch count as one, so a source range across two of them fits.
func TestPlanMemory(t *testing.T) {
	const mib = 1 << 20
	low := manifest.E820Entry{Start: 0, End: 0x9fc00, Type: 1}
	for _, tc := range []struct {
		name string
		dst  []manifest.E820Entry // the source is machine(512)'s map
		// refused: the reason of the one "memory" refusal; "": none
		refused string
	}{
		{name: "same RAM in one entry", dst: []manifest.E820Entry{low, {Start: 0x100000, End: 512 * mib, Type: 1}}},
		{
			name: "RAM split in touching entries",
			dst: []manifest.E820Entry{
				low,
				{Start: 0x100000, End: 256 * mib, Type: 1},
				{Start: 256 * mib, End: 1024 * mib, Type: 1},
			},
		},
		{
			name: "RAM split in overlapping entries",
			dst: []manifest.E820Entry{
				low,
				{Start: 0x100000, End: 300 * mib, Type: 1},
				{Start: 256 * mib, End: 1024 * mib, Type: 1},
			},
		},
		{
			name: "a reserved hole inside the source's RAM",
			dst: []manifest.E820Entry{
				low,
				{Start: 0x100000, End: 256 * mib, Type: 1},
				{Start: 256 * mib, End: 257 * mib, Type: 2},
				{Start: 257 * mib, End: 1024 * mib, Type: 1},
			},
			refused: "source RAM 0x100000-0x1fffffff (511 MiB) is not RAM on this machine (1022 MiB of RAM)",
		},
		{
			name: "a gap between two entries",
			dst: []manifest.E820Entry{
				low,
				{Start: 0x100000, End: 256 * mib, Type: 1},
				{Start: 257 * mib, End: 1024 * mib, Type: 1},
			},
			refused: "source RAM 0x100000-0x1fffffff (511 MiB) is not RAM on this machine (1022 MiB of RAM)",
		},
		{
			name:    "less RAM",
			dst:     []manifest.E820Entry{low, {Start: 0x100000, End: 256 * mib, Type: 1}},
			refused: "source RAM 0x100000-0x1fffffff (511 MiB) is not RAM on this machine (255 MiB of RAM)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := machine(512, "sse2"), machine(512, "sse2")
			dst.E820, dst.E820Digest = tc.dst, "0x2"
			p := Make(src, dst, aliases(t), Options{HasData: func(string) bool { return false }})
			var reasons []string
			for _, r := range p.Refusals {
				if r.Check == "memory" {
					reasons = append(reasons, r.Reason)
				}
			}
			switch {
			case tc.refused == "" && len(reasons) > 0:
				t.Errorf("memory refused: %q", reasons)
			case tc.refused != "" && (len(reasons) != 1 || reasons[0] != tc.refused):
				t.Errorf("memory refusals %q, want [%q]", reasons, tc.refused)
			}
			if p.OK != (tc.refused == "") {
				t.Errorf("ok = %v: %+v", p.OK, p.Refusals)
			}
			if p.Resume != "kexec" {
				t.Errorf("resume %s, want kexec", p.Resume)
			}
		})
	}
}

func TestAliases(t *testing.T) {
	a := aliases(t)
	for _, tc := range []struct {
		modalias, module string
		builtin          bool
	}{
		{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "virtio_blk", false},
		{"pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", "nvme", true},
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", "ahci", false},
		{"pci:v000010ECd00008139sv00000000sd00000000bc02sc00i00", "", false},
	} {
		if m, b := a.Match(tc.modalias); m != tc.module || b != tc.builtin {
			t.Errorf("Match(%s) = %s %v, want %s %v", tc.modalias, m, b, tc.module, tc.builtin)
		}
	}
	if err := (&Aliases{}).ParseModulesAlias(strings.NewReader("alias x\n")); err == nil {
		t.Error("a malformed line was accepted")
	}
}

// Before Linux 6.13 a built-in driver's PCI table is not in
// modules.builtin.modinfo: NVMe and AHCI are found by class when
// modules.builtin lists them.
func TestAliasesBuiltinByClass(t *testing.T) {
	const nvme = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"
	const ahci = "pci:v00008086d00002922sv00001AF4sd00001100BC01SC06I01"
	for _, tc := range []struct {
		name, builtin    string
		modalias, module string
	}{
		{"nvme built in", "kernel/drivers/nvme/host/nvme.ko\nkernel/drivers/nvme/host/nvme-core.ko\n", nvme, "nvme"},
		{"nvme a module", "kernel/drivers/nvme/host/nvme-core.ko\n", nvme, ""},
		{"ahci built in, upper case modalias", "kernel/drivers/ata/ahci.ko\n", ahci, "ahci"},
		{"not PCI", "kernel/drivers/nvme/host/nvme.ko\n", "virtio:d00000002v00001AF4bc01sc08i02", ""},
	} {
		a := &Aliases{}
		if err := a.ParseModulesBuiltin(strings.NewReader(tc.builtin)); err != nil {
			t.Fatal(err)
		}
		m, b := a.Match(tc.modalias)
		if m != tc.module || b != (tc.module != "") {
			t.Errorf("%s: Match = %q %v, want %q", tc.name, m, b, tc.module)
		}
		mods, _ := a.MatchAll(tc.modalias)
		if (len(mods) == 1 && mods[0] == tc.module) != (tc.module != "") {
			t.Errorf("%s: MatchAll = %q", tc.name, mods)
		}
	}
}

func FuzzParseModulesAlias(f *testing.F) {
	f.Add([]byte(aliasText))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := &Aliases{}
		if a.ParseModulesAlias(strings.NewReader(string(b))) == nil {
			a.Match("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
		}
		a.ParseBuiltinModinfo(b)
	})
}
