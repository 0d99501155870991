package probe

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/images/manifest"
)

// fakeRoot makes the fake machine of testdata/make-root.sh in a temporary
// directory.
func fakeRoot(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run testdata/make-root.sh")
	}
	script, err := os.ReadFile("testdata/make-root.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "root")
	cmd := exec.Command(sh, "-s", dir)
	cmd.Stdin = bytes.NewReader(script) // read here, so that go test's cache sees changes
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testdata/make-root.sh: %v\n%s", err, out)
	}
	return dir
}

// TestProbeTree reads the fake Debian 13 guest of testdata/make-root.sh and
// checks every section of its profile.
func TestProbeTree(t *testing.T) {
	m, err := Probe(fakeRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != "probe" || m.Version != manifest.Version || m.Hostname != "thaw-src" {
		t.Errorf("kind %q version %d hostname %q", m.Kind, m.Version, m.Hostname)
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		t.Errorf("created %q: %v", m.Created, err)
	}
	if err := m.Check(); err != nil {
		t.Errorf("the probed manifest fails its own check: %v", err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := manifest.Parse(b); err != nil || !reflect.DeepEqual(back, m) {
		t.Errorf("JSON round trip: %v\n%s", err, b)
	}

	const sector = 512
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"kernel", m.Kernel, manifest.Kernel{
			Release:            "6.12.57+deb13-amd64",
			Version:            "#1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1 (2025-11-05)",
			Cmdline:            "BOOT_IMAGE=/vmlinuz-6.12.57+deb13-amd64 root=/dev/mapper/vg0-root ro console=ttyS0 resume=/dev/mapper/vg0-swap",
			VmlinuzSHA256:      "39a2efff6255cd681d85faaa9099e1104e8db68ab6628d227f8741691b0d512a", // sha256 of "not a kernel\n"
			ModulesAliasSHA256: "c966163f0a6a327e984bf44d8eda309068cd51ba6a7529a78049bd7eb6544169", // under usr/lib/modules
		}},
		{"e820", m.E820, []manifest.E820Entry{
			{Start: 0, End: 0x9fc00, Type: 1, Name: "System RAM"},
			{Start: 0x9fc00, End: 0xa0000, Type: 2, Name: "Reserved"},
			{Start: 0xf0000, End: 0x100000, Type: 2, Name: "Reserved"},
			{Start: 0x100000, End: 0xffdd000, Type: 1, Name: "System RAM"},
			{Start: 0xffdd000, End: 0x10000000, Type: 2, Name: "Reserved"},
			{Start: 0xfffc0000, End: 0x100000000, Type: 2, Name: "Reserved"},
			{Start: 0xfd00000000, End: 0x10000000000, Type: 2, Name: "Reserved"},
		}},
		// The digest a Debian 13 kernel (6.12) stored in the hibernation
		// image it wrote on QEMU with SeaBIOS and 256 MiB.
		{"e820 digest", m.E820Digest, "0xba571fd2"},
		{"memory", m.MemoryBytes, uint64(209924 * 1024)},
		{"cpu", []any{m.CPU.Vendor, m.CPU.Family, m.CPU.Model, m.CPU.Stepping, m.CPU.Name, m.CPU.Count, len(m.CPU.Flags)},
			[]any{"AuthenticAMD", 26, 2, 1, "AMD EPYC", 2, 93}},
		{"cpu flags sorted", slices.IsSorted(m.CPU.Flags) && slices.Contains(m.CPU.Flags, "lm") && slices.Contains(m.CPU.Flags, "avx512f"), true},
		{"pci", pciSummary(m.PCI), []string{
			"0000:00:00.0 0x8086:0x1237 0x060000 ",
			"0000:00:01.0 0x8086:0x7000 0x060100 ",
			"0000:00:01.1 0x8086:0x7010 0x010180 ata_piix",
			"0000:00:03.0 0x1af4:0x1000 0x020000 virtio-pci",
			"0000:00:04.0 0x1af4:0x1001 0x010000 virtio-pci",
			"0000:00:05.0 0x1b36:0x0010 0x010802 nvme",
			"0000:00:06.0 0x1b36:0x0010 0x010802 nvme",
			"0000:00:07.0 0x8086:0x100e 0x020000 e1000",
			"0000:00:08.0 0x1af4:0x1004 0x010000 virtio-pci",
		}},
		{"pci 04.0", m.PCI[4], manifest.PCIDevice{
			Address: "0000:00:04.0", Vendor: "0x1af4", Device: "0x1001", Class: "0x010000",
			Subsystem: "0x1af4:0x0002", Modalias: "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", Driver: "virtio-pci",
		}},
		{"nics", m.NICs, []manifest.NIC{
			{Name: "enp0s3", MAC: "52:54:00:12:34:56", Driver: "virtio_net", PCI: "0000:00:03.0",
				Routes: []string{"default via 10.0.2.2", "10.0.2.0/24"}},
			{Name: "enp0s7", MAC: "52:54:00:ab:cd:ef", Driver: "e1000", PCI: "0000:00:07.0",
				Routes: []string{"192.168.7.0/24", "203.0.113.5/32 via 192.168.7.1"}},
		}},
		{"disks", m.Disks, []manifest.Disk{
			{Name: "nvme0n1", Path: "/dev/nvme0n1", Size: 4194304 * sector, Model: "QEMU NVMe Ctrl", Serial: "deadbeef",
				WWN: "nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001", PCI: "0000:00:05.0", Driver: "nvme", Dev: "259:0",
				Partitions: []manifest.Partition{{Number: 1, Name: "nvme0n1p1", Start: 2048 * sector, Size: 4192223 * sector}}},
			{Name: "nvme1n1", Path: "/dev/nvme1n1", Size: 2097152 * sector, Model: "QEMU NVMe Ctrl", Serial: "cafef00d",
				WWN: "eui.0000000000000001", PCI: "0000:00:06.0", Driver: "nvme", Dev: "259:2"},
			{Name: "sda", Path: "/dev/sda", Size: 2097152 * sector, Model: "QEMU HARDDISK", Serial: "SCSI-SER01",
				WWN: "naa.5000c500a1b2c3d4", PCI: "0000:00:08.0", Driver: "virtio_scsi", Dev: "8:0"},
			{Name: "vda", Path: "/dev/vda", Size: 16777216 * sector, Serial: "thaw-root", PCI: "0000:00:04.0", Driver: "virtio_blk", Dev: "254:0",
				Partitions: []manifest.Partition{
					{Number: 1, Name: "vda1", Start: 2048 * sector, Size: 2048 * sector},
					{Number: 2, Name: "vda2", Start: 4096 * sector, Size: 1048576 * sector},
					{Number: 3, Name: "vda3", Start: 1052672 * sector, Size: 15724511 * sector},
				}},
		}},
		{"dm", m.DM, []manifest.DMDevice{
			{Name: "vg0-root", UUID: "LVM-Jq3hV5dQbgN2Bt0eYl8f1Wc6sM9kXa4RZ00", Dev: "253:0", Slaves: []string{"vda3"}},
			{Name: "vg0-swap", UUID: "LVM-Jq3hV5dQbgN2Bt0eYl8f1Wc6sM9kXa4RZ01", Dev: "253:1", Slaves: []string{"vda3"}},
		}},
		{"mounts", m.Mounts, []manifest.Mount{
			{Target: "/", Source: "/dev/mapper/vg0-root", FSType: "ext4", Dev: "253:0"},
			{Target: "/boot", Source: "/dev/vda2", FSType: "ext4", Dev: "254:2"},
			{Target: "/srv/my data", Source: "/dev/nvme0n1p1", FSType: "xfs", Dev: "259:1"},
			{Target: "/data", Source: "/dev/nvme1n1", FSType: "btrfs", Dev: "0:45"},
		}},
		{"swaps", m.Swaps, []manifest.Swap{
			{Path: "/dev/dm-1", Type: "partition", Size: 1048572 * 1024, Used: 0, Priority: -2},
			{Path: "/var/swap file", Type: "file", Size: 524284 * 1024, Used: 1024 * 1024, Priority: -3},
		}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			g, _ := json.MarshalIndent(c.got, "", "  ")
			w, _ := json.MarshalIndent(c.want, "", "  ")
			t.Errorf("%s:\n got %s\nwant %s", c.name, g, w)
		}
	}
}

func pciSummary(devs []manifest.PCIDevice) []string {
	var s []string
	for _, d := range devs {
		s = append(s, d.Address+" "+d.Vendor+":"+d.Device+" "+d.Class+" "+d.Driver)
	}
	return s
}

// TestProbeSmallTrees runs Probe on trees made of a few files: what must
// fail, with the file named, and what may be missing.
func TestProbeSmallTrees(t *testing.T) {
	const cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R)\nstepping\t: 7\nflags\t\t: sse2 fpu sse2 lm\n\n" +
		"processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: other\n\n"
	const meminfo = "MemTotal:        1024 kB\nMemFree:  10 kB\n"
	base := map[string]string{"proc/cpuinfo": cpuinfo, "proc/meminfo": meminfo}
	for _, c := range []struct {
		name  string
		files map[string]string // "" removes a base file
		err   string            // wanted in the error; "" for success
		check func(*testing.T, *manifest.Manifest)
	}{
		{name: "minimal", check: func(t *testing.T, m *manifest.Manifest) {
			if m.MemoryBytes != 1<<20 || m.CPU.Count != 2 || m.CPU.Vendor != "GenuineIntel" || m.CPU.Model != 85 ||
				!reflect.DeepEqual(m.CPU.Flags, []string{"fpu", "lm", "sse2"}) {
				t.Errorf("memory %d cpu %+v", m.MemoryBytes, m.CPU)
			}
			if len(m.E820) != 0 || m.E820Digest != "" || len(m.PCI) != 0 || len(m.NICs) != 0 || len(m.Disks) != 0 || len(m.DM) != 0 ||
				len(m.Mounts) != 0 || len(m.Swaps) != 0 || m.Kernel != (manifest.Kernel{}) {
				t.Errorf("parts from missing files: %+v", m)
			}
			b, _ := m.Marshal()
			if strings.Contains(string(b), "null") {
				t.Errorf("null in the JSON of an empty profile:\n%s", b)
			}
		}},
		{name: "no cpuinfo", files: map[string]string{"proc/cpuinfo": ""}, err: "proc/cpuinfo"},
		{name: "no meminfo", files: map[string]string{"proc/meminfo": ""}, err: "proc/meminfo"},
		{name: "no MemTotal", files: map[string]string{"proc/meminfo": "MemFree: 1 kB\n"}, err: "proc/meminfo: no MemTotal"},
		{name: "MemTotal in pages", files: map[string]string{"proc/meminfo": "MemTotal: 12\n"}, err: "proc/meminfo line 1"},
		{name: "no processors", files: map[string]string{"proc/cpuinfo": "vendor_id: x\n"}, err: "no processor entries"},
		{name: "bad family", files: map[string]string{"proc/cpuinfo": "processor: 0\ncpu family: six\n"}, err: "proc/cpuinfo line 2: cpu family"},
		{name: "unknown memory type", files: map[string]string{
			"sys/firmware/memmap/0/start": "0x0\n", "sys/firmware/memmap/0/end": "0xfff\n", "sys/firmware/memmap/0/type": "Mystery\n",
		}, err: `sys/firmware/memmap/0/type: unknown memory type "Mystery"`},
		{name: "memmap in numeric order", files: map[string]string{
			"sys/firmware/memmap/10/start": "0x200000\n", "sys/firmware/memmap/10/end": "0x2fffff\n", "sys/firmware/memmap/10/type": "ACPI Tables\n",
			"sys/firmware/memmap/9/start": "0x100000\n", "sys/firmware/memmap/9/end": "0x1fffff\n", "sys/firmware/memmap/9/type": "Soft Reserved\n",
		}, check: func(t *testing.T, m *manifest.Manifest) {
			want := []manifest.E820Entry{{Start: 0x100000, End: 0x200000, Type: 0xefffffff, Name: "Soft Reserved"}, {Start: 0x200000, End: 0x300000, Type: 3, Name: "ACPI Tables"}}
			if !reflect.DeepEqual(m.E820, want) {
				t.Errorf("e820 %+v", m.E820)
			}
		}},
		{name: "memmap end missing", files: map[string]string{"sys/firmware/memmap/0/start": "0x0\n", "sys/firmware/memmap/0/type": "Reserved\n"}, err: "sys/firmware/memmap/0/end"},
		{name: "bad mountinfo", files: map[string]string{"proc/self/mountinfo": "1 2 8:1 / /\n"}, err: "proc/self/mountinfo line 1"},
		{name: "bad swaps", files: map[string]string{"proc/swaps": "Filename Type Size Used Priority\n/dev/sda2 partition x 0 -2\n"}, err: "proc/swaps line 2"},
		{name: "bad route mask", files: map[string]string{"proc/net/route": "Iface\n" + "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0\n"}, err: "proc/net/route line 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range c.files {
				files[k] = v
			}
			for name, text := range files {
				if text == "" {
					continue
				}
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := Probe(root)
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && err == nil:
				t.Fatalf("no error, want one with %q", c.err)
			case c.err != "" && !strings.Contains(err.Error(), c.err):
				t.Fatalf("error %q, want one with %q", err, c.err)
			}
			if c.check != nil {
				c.check(t, m)
			}
		})
	}
}

// TestReadTable reads the partition table of disk images: a GPT written by
// go-diskfs, an MBR, a GPT's protective MBR alone, and no table at all.
func TestReadTable(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()

	gptImg := filepath.Join(dir, "gpt.img")
	f, err := os.Create(gptImg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, GUID: "0A0B0C0D-1111-4222-8333-444455556666",
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem, Name: "boot", GUID: "11111111-2222-4333-8444-555555555555"},
			{Index: 2, Start: 4096, End: 16383, Type: gpt.LinuxSwap, Name: "swap", GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"},
		}}
	if err := tab.Write(f, size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	mbrImg := filepath.Join(dir, "mbr.img")
	sec := make([]byte, 512)
	copy(sec[440:], []byte{0x78, 0x56, 0x34, 0x12})
	sec[446+4] = 0x83    // partition 1: Linux
	sec[446+16+4] = 0x82 // partition 2: Linux swap
	sec[446] = 0x80      // partition 1 bootable
	sec[510], sec[511] = 0x55, 0xaa
	if err := os.WriteFile(mbrImg, append(sec, make([]byte, size-512)...), 0o644); err != nil {
		t.Fatal(err)
	}

	protImg := filepath.Join(dir, "protective.img")
	prot := slices.Clone(sec)
	prot[446+4], prot[446+16+4] = 0xee, 0
	if err := os.WriteFile(protImg, append(prot, make([]byte, size-512)...), 0o644); err != nil {
		t.Fatal(err)
	}

	bootImg := filepath.Join(dir, "bootsector.img")
	boot := slices.Clone(sec)
	boot[446] = 0x4d // code where a table's boot indicator would be: a filesystem
	if err := os.WriteFile(bootImg, append(boot, make([]byte, size-512)...), 0o644); err != nil {
		t.Fatal(err)
	}

	blank := filepath.Join(dir, "blank.img")
	if err := os.WriteFile(blank, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}

	sysfs := func() []manifest.Partition { // what the kernel listed: partition 1 only
		return []manifest.Partition{{Number: 1, Name: "vdb1", Start: 2048 * 512, Size: 2048 * 512}}
	}
	for _, c := range []struct {
		name, img string
		table     string
		guid      string
		parts     []manifest.Partition
	}{
		{"gpt", gptImg, "gpt", "0a0b0c0d-1111-4222-8333-444455556666", []manifest.Partition{
			{Number: 1, Name: "vdb1", Start: 2048 * 512, Size: 2048 * 512, PartUUID: "11111111-2222-4333-8444-555555555555", Label: "boot", Type: "0fc63daf-8483-4772-8e79-3d69d8477de4"},
			{Number: 2, Start: 4096 * 512, Size: 12288 * 512, PartUUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", Label: "swap", Type: "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"},
		}},
		{"mbr", mbrImg, "mbr", "12345678", []manifest.Partition{
			{Number: 1, Name: "vdb1", Start: 2048 * 512, Size: 2048 * 512, PartUUID: "12345678-01", Type: "0x83"},
		}},
		{"protective mbr, no gpt", protImg, "", "", sysfs()},
		{"filesystem boot sector", bootImg, "", "", sysfs()},
		{"blank", blank, "", "", sysfs()},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := os.Open(c.img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d := manifest.Disk{Name: "vdb", Size: size, Partitions: sysfs()}
			readTable(&d, f, 512)
			if d.Table != c.table || d.DiskGUID != c.guid || !reflect.DeepEqual(d.Partitions, c.parts) {
				t.Errorf("table %q guid %q partitions %+v\nwant %q %q %+v", d.Table, d.DiskGUID, d.Partitions, c.table, c.guid, c.parts)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/srv/my\040data`: "/srv/my data",
		`/a\011b\012c`:    "/a\tb\nc",
		`/back\134slash`:  `/back\slash`,
		`/plain`:          "/plain",
		`/short\04`:       `/short\04`,
		`/not\089`:        `/not\089`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProbeLive probes this machine: whatever it is, it has a kernel
// release, memory and a CPU with flags. Containers may lack
// /sys/firmware/memmap, /boot and disks; that must not fail.
func TestProbeLive(t *testing.T) {
	if _, err := os.Stat("/proc/cpuinfo"); err != nil {
		t.Skip("no /proc/cpuinfo: not Linux")
	}
	m, err := Probe("/")
	if err != nil {
		t.Fatal(err)
	}
	if m.Kernel.Release == "" || m.MemoryBytes == 0 || m.CPU.Count == 0 || len(m.CPU.Flags) == 0 {
		t.Errorf("release %q memory %d cpu %+v", m.Kernel.Release, m.MemoryBytes, m.CPU)
	}
	if len(m.E820) > 0 && m.E820Digest == "" {
		t.Errorf("%d memory map entries and no digest", len(m.E820))
	}
	if err := m.Check(); err != nil {
		t.Error(err)
	}
	t.Logf("%s: %s, %d MiB, %d CPUs, %d PCI devices, %d NICs, %d disks, %d mounts, e820 digest %q",
		m.Hostname, m.Kernel.Release, m.MemoryBytes>>20, m.CPU.Count, len(m.PCI), len(m.NICs), len(m.Disks), len(m.Mounts), m.E820Digest)
}
