package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

const (
	virtioBlk = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
	virtioNet = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
	pvscsi    = "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00"
	vmxnet3   = "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00"
	e1000     = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
	rtl8139   = "pci:v000010ECd00008139sv00000000sd00000000bc02sc00i00"
)

// server is a source with root and swap on LVM on vda (virtio-blk, slot 3)
// and a virtio NIC enp0s2 at slot 2.
func server() *manifest.Manifest {
	m := machine(512, "sse2")
	m.PCI = []manifest.PCIDevice{
		{Address: "0000:00:02.0", Vendor: "0x1af4", Device: "0x1000", Class: "0x020000", Modalias: virtioNet, Driver: "virtio-pci"},
		{Address: "0000:00:03.0", Vendor: "0x1af4", Device: "0x1001", Class: "0x010000", Modalias: virtioBlk, Driver: "virtio-pci"},
	}
	m.Disks = []manifest.Disk{{Name: "vda", Size: 4 << 30, PCI: "0000:00:03.0", Driver: "virtio-pci", Dev: "254:0", DiskGUID: "6f1c2d3e-0000-4000-8000-000000000001", Movable: true,
		Partitions: []manifest.Partition{{Number: 1, Name: "vda1", Dev: "254:1", Size: 3 << 30}, {Number: 2, Name: "vda2", Dev: "254:2", Size: 1 << 30}}}}
	m.DM = []manifest.DMDevice{
		{Name: "vg0-root", Dev: "253:0", Slaves: []string{"vda1"}},
		{Name: "vg0-swap", Dev: "253:1", Slaves: []string{"vda1"}},
	}
	m.Mounts = []manifest.Mount{{Target: "/", Source: "/dev/mapper/vg0-root", FSType: "ext4", Dev: "253:0"}}
	m.Swaps = []manifest.Swap{{Path: "/dev/dm-1", Type: "partition"}}
	m.NICs = []manifest.NIC{{Name: "enp0s2", MAC: "52:54:00:12:34:56", Driver: "virtio_net", PCI: "0000:00:02.0",
		Addresses: []string{"10.0.2.15/24", "fe80::5054:ff:fe12:3456/64"}, Routes: []string{"default via 10.0.2.2", "10.0.2.0/24"}}}
	return m
}

// vmware is a target with the disk on pvscsi (slot 6) and a vmxnet3 NIC
// (slot 10).
func vmware() *manifest.Manifest {
	m := machine(512, "sse2")
	m.PCI = []manifest.PCIDevice{
		{Address: "0000:00:06.0", Vendor: "0x15ad", Device: "0x07c0", Class: "0x010700", Modalias: pvscsi, Driver: "vmw_pvscsi"},
		{Address: "0000:00:0a.0", Vendor: "0x15ad", Device: "0x07b0", Class: "0x020000", Modalias: vmxnet3, Driver: "vmxnet3"},
	}
	m.Disks = []manifest.Disk{{Name: "sda", Size: 4 << 30, PCI: "0000:00:06.0", Driver: "vmw_pvscsi"}}
	m.NICs = []manifest.NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Driver: "vmxnet3", PCI: "0000:00:0a.0"}}
	return m
}

func row(t *testing.T, p *Plan, kind, source string) Device {
	t.Helper()
	for _, d := range p.Devices {
		if d.Kind == kind && d.Source.Name == source {
			return d
		}
	}
	t.Fatalf("no %s row for %s in %+v", kind, source, p.Devices)
	return Device{}
}

func TestDevicePlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(src, dst *manifest.Manifest)
		ok      bool
		disk    string // action of vda's row
		nic     string // action of enp0s2's row
		check   string // refusal check, when refused
		modules string // module names carried, in order
		want    string // in a row's why or fix
	}{
		{"same machine", func(src, dst *manifest.Manifest) {
			*dst = *server()
			dst.Disks[0].Movable = false
		}, true, Keep, Keep, "", "", "the same controller"},
		{"moved disk and renamed NIC (E6)", func(src, dst *manifest.Manifest) {}, true, Redirect, Rebind, "",
			"scsi_common scsi_mod vmw_pvscsi sd_mod vmxnet3", "takes the name enp0s2, MAC 52:54:00:12:34:56 and 10.0.2.15/24"},
		{"plain-partition root", func(src, dst *manifest.Manifest) {
			src.Disks[0].Movable = false
			src.Mounts = append(src.Mounts, manifest.Mount{Target: "/boot", Dev: "254:2"})
		}, false, Refuse, Rebind, "disk", "vmxnet3", "/boot is mounted from the partition /dev/vda2"},
		{"plain swap", func(src, dst *manifest.Manifest) {
			src.Disks[0].Movable = false
			src.Swaps = []manifest.Swap{{Path: "/dev/vda2"}}
		}, false, Refuse, Rebind, "disk", "vmxnet3", "run `thaw prepare` on the source"},
		{"missing disk driver", func(src, dst *manifest.Manifest) {
			dst.PCI[0].Modalias = "pci:v00001000d00000012sv00000000sd00000000bc01sc04i00"
		}, false, Refuse, Rebind, "driver", "vmxnet3", "no driver for the disk controller 0000:00:06.0"},
		{"missing NIC driver", func(src, dst *manifest.Manifest) {
			dst.PCI[1].Modalias = rtl8139
		}, true, Redirect, None, "", "scsi_common scsi_mod vmw_pvscsi sd_mod", "no driver for the NIC 0000:00:0a.0"},
		{"NIC gained a slot (same model)", func(src, dst *manifest.Manifest) {
			dst.PCI[1] = manifest.PCIDevice{Address: "0000:00:09.0", Vendor: "0x1af4", Device: "0x1000", Class: "0x020000", Modalias: virtioNet}
			src.PCI[0].Driver = "virtio-pci"
			src.PCI = append(src.PCI, manifest.PCIDevice{Address: "0000:00:09.0"}) // nothing there on the source
		}, true, Redirect, Rebind, "", "scsi_common scsi_mod vmw_pvscsi sd_mod", "→ virtio_net at 0000:00:09.0"},
		{"other NIC model in the source's slot", func(src, dst *manifest.Manifest) {
			dst.PCI[1] = manifest.PCIDevice{Address: "0000:00:02.0", Vendor: "0x8086", Device: "0x100e", Class: "0x020000", Modalias: e1000}
		}, true, Redirect, None, "", "scsi_common scsi_mod vmw_pvscsi sd_mod", "put the new NIC in another PCI slot"},
		{"other disk controller in the source's slot", func(src, dst *manifest.Manifest) {
			dst.PCI[0].Address, dst.Disks[0].PCI = "0000:00:03.0", "0000:00:03.0"
		}, false, Refuse, Rebind, "slot", "vmxnet3", "put the disk controller in another PCI slot"},
		{"no GPT to find the disk by", func(src, dst *manifest.Manifest) { src.Disks[0].DiskGUID = "" }, false, Refuse, Rebind, "disk", "vmxnet3", "no GPT disk GUID"},
		{"LUKS2 on a partition, key in the keyring", func(src, dst *manifest.Manifest) {
			src.DM = append(src.DM, manifest.DMDevice{Name: "vda2_crypt", Dev: "253:2", Slaves: []string{"vda2"},
				Table: "0 2093056 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-5e1f-vda2_crypt-d0 0 254:2 32768"})
		}, false, Refuse, Rebind, "crypt", "vmxnet3", "vda2_crypt sit directly on it with their key in the kernel keyring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := server(), vmware()
			tc.edit(src, dst)
			a := aliases(t)
			// virtio_net is a module of the image kernel, bound on the
			// source.
			src.PCI[0].Driver = "virtio_net"
			p := Make(src, dst, a, Options{Disks: []string{dst.Disks[0].Name}})
			if p.OK != tc.ok {
				t.Fatalf("ok = %v, want %v: %+v", p.OK, tc.ok, p.Refusals)
			}
			if !tc.ok {
				found := false
				for _, r := range p.Refusals {
					found = found || r.Check == Check(tc.check)
				}
				if !found {
					t.Errorf("no %q refusal in %+v", tc.check, p.Refusals)
				}
			}
			d, n := row(t, p, "disk", "vda"), row(t, p, "nic", "enp0s2")
			if d.Action != tc.disk || n.Action != tc.nic {
				t.Errorf("disk %s (%s), nic %s (%s); want %s, %s", d.Action, d.Why, n.Action, n.Why, tc.disk, tc.nic)
			}
			var mods []string
			for _, f := range p.Modules {
				mods = append(mods, ModuleName(f))
			}
			if got := strings.Join(mods, " "); got != tc.modules {
				t.Errorf("modules %q, want %q", got, tc.modules)
			}
			text := d.Why + " " + d.Fix + " " + n.Why + " " + n.Fix
			if !strings.Contains(text, tc.want) {
				t.Errorf("rows do not say %q:\n%s", tc.want, text)
			}
			if d.Action == Redirect && (strings.Join(d.Source.DM, ",") != "vg0-root,vg0-swap" || d.Target.Origin != OriginModule) {
				t.Errorf("redirect row: dm %v, origin %s", d.Source.DM, d.Target.Origin)
			}
			if n.Action == Rebind && (n.Target.MAC != "52:54:00:12:34:56" || n.Target.Addresses[0] != "10.0.2.15/24") {
				t.Errorf("rebind row target: %+v", n.Target)
			}
		})
	}
}

// A dm-crypt device straight on a moving partition whose table holds its
// key (hidden in the manifest) moves: the resumed process reloads it with
// the key the kernel holds. One on an LV (LUKS on LVM) moves with the LV.
func TestCryptMoves(t *testing.T) {
	for _, tc := range []struct{ name, slave, table string }{
		{"key in the table", "vda2", "0 2093056 crypt aes-xts-plain64 <hidden> 0 254:2 32768"},
		{"LUKS2 on an LV", "dm-0", "0 2093056 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-5e1f-root_crypt-d0 0 253:0 32768"},
	} {
		src, dst := server(), vmware()
		src.PCI[0].Driver = "virtio_net"
		src.DM = append(src.DM, manifest.DMDevice{Name: "cryptdata", Dev: "253:2", Slaves: []string{tc.slave}, Table: tc.table})
		p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}})
		if d := row(t, p, "disk", "vda"); !p.OK || d.Action != Redirect || !slices.Contains(d.Source.DM, "cryptdata") {
			t.Errorf("%s: ok %v, disk %s, dm %v: %+v", tc.name, p.OK, d.Action, d.Source.DM, p.Refusals)
		}
	}
}

func TestTwoNICs(t *testing.T) {
	src, dst := server(), vmware()
	src.PCI[0].Driver = "virtio_net"
	src.NICs = append(src.NICs, manifest.NIC{Name: "enp0s7", MAC: "52:54:00:ab:cd:ef", Driver: "e1000", PCI: "0000:00:07.0", Addresses: []string{"192.168.7.2/24"}})
	src.PCI = append(src.PCI, manifest.PCIDevice{Address: "0000:00:07.0", Vendor: "0x8086", Device: "0x100e", Class: "0x020000", Modalias: e1000, Driver: "e1000"})
	// The e1000 stays; the virtio NIC's place goes to the vmxnet3.
	dst.PCI = append(dst.PCI, manifest.PCIDevice{Address: "0000:00:07.0", Vendor: "0x8086", Device: "0x100e", Class: "0x020000", Modalias: e1000})
	p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}})
	if a, b := row(t, p, "nic", "enp0s2"), row(t, p, "nic", "enp0s7"); a.Action != Rebind || a.Target.PCI != "0000:00:0a.0" || b.Action != Keep {
		t.Errorf("enp0s2 %s → %+v, enp0s7 %s", a.Action, a.Target, b.Action)
	}
	// Two moved NICs take the free ones in address order.
	dst.PCI[2].Address = "0000:00:08.0"
	dst.PCI = append(dst.PCI, manifest.PCIDevice{Address: "0000:00:09.0", Vendor: "0x15ad", Device: "0x07b0", Class: "0x020000", Modalias: vmxnet3})
	p = Make(src, dst, aliases(t), Options{Disks: []string{"sda"}})
	a, b := row(t, p, "nic", "enp0s2"), row(t, p, "nic", "enp0s7")
	if a.Target.PCI != "0000:00:08.0" || b.Target.PCI != "0000:00:09.0" || a.Action != Rebind || b.Action != Rebind {
		t.Errorf("enp0s2 %s → %s, enp0s7 %s → %s", a.Action, a.Target.PCI, b.Action, b.Target.PCI)
	}
}

func TestLoadOrder(t *testing.T) {
	a := aliases(t)
	got, err := a.LoadOrder("ahci", "sd_mod")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, ModuleName(f))
	}
	if want := "scsi_common scsi_mod libata libahci ahci sd_mod"; strings.Join(names, " ") != want {
		t.Errorf("load order %v, want %s", names, want)
	}
	if _, err := a.LoadOrder("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown module: %v", err)
	}
	if err := (&Aliases{}).ParseModulesDep(strings.NewReader(": x\n")); err == nil {
		t.Error("a malformed modules.dep line was accepted")
	}
}

// Two source NICs against two new ones: each takes the next free NIC here
// in PCI address order, with its own name, MAC and addresses; a third
// source NIC finds none left.
func TestDevicePlanTwoNICs(t *testing.T) {
	src, dst := server(), vmware()
	src.PCI[0].Driver = "virtio_net"
	src.PCI = append(src.PCI, manifest.PCIDevice{Address: "0000:00:08.0", Vendor: "0x1af4", Device: "0x1000", Class: "0x020000", Modalias: virtioNet, Driver: "virtio_net"},
		manifest.PCIDevice{Address: "0000:00:09.0", Vendor: "0x1af4", Device: "0x1000", Class: "0x020000", Modalias: virtioNet, Driver: "virtio_net"})
	src.NICs = append(src.NICs,
		manifest.NIC{Name: "enp0s8", MAC: "52:54:00:00:00:08", Driver: "virtio_net", PCI: "0000:00:08.0", Addresses: []string{"192.168.8.1/24"}},
		manifest.NIC{Name: "enp0s9", MAC: "52:54:00:00:00:09", Driver: "virtio_net", PCI: "0000:00:09.0"})
	dst.PCI = append(dst.PCI, manifest.PCIDevice{Address: "0000:00:0b.0", Vendor: "0x15ad", Device: "0x07b0", Class: "0x020000", Modalias: vmxnet3})
	dst.NICs = append(dst.NICs, manifest.NIC{Name: "eth1", MAC: "00:0c:29:00:00:0b", Driver: "vmxnet3", PCI: "0000:00:0b.0"})
	p := Make(src, dst, aliases(t), Options{Disks: []string{"sda"}})
	if !p.OK {
		t.Fatalf("refused: %+v", p.Refusals)
	}
	for _, tc := range []struct{ name, action, pci, mac string }{
		{"enp0s2", Rebind, "0000:00:0a.0", "52:54:00:12:34:56"},
		{"enp0s8", Rebind, "0000:00:0b.0", "52:54:00:00:00:08"},
		{"enp0s9", None, "", ""},
	} {
		r := row(t, p, "nic", tc.name)
		got := r.Action
		if r.Target != nil {
			if r.Target.PCI != tc.pci || r.Target.MAC != tc.mac {
				t.Errorf("%s → %s with MAC %s, want %s with %s", tc.name, r.Target.PCI, r.Target.MAC, tc.pci, tc.mac)
			}
		} else if tc.pci != "" {
			t.Errorf("%s has no target, want %s", tc.name, tc.pci)
		}
		if got != tc.action {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, r.Why, tc.action)
		}
	}
	n := 0
	for _, f := range p.Modules {
		if ModuleName(f) == "vmxnet3" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("vmxnet3 carried %d times in %q, want once", n, p.Modules)
	}
}
