package manifest

import (
	"encoding/json"
	"fmt"
)

// Version is the manifest format this package writes and reads.
const Version = 1

// Manifest is a machine's profile; in a bundle, the source's.
type Manifest struct {
	Version  int    `json:"version"`
	Kind     string `json:"kind"` // "probe", "capture" or "export"
	Hostname string `json:"hostname,omitempty"`
	Created  string `json:"created,omitempty"` // RFC 3339

	Kernel Kernel `json:"kernel"`
	// Firmware is how the machine booted: "uefi" or "bios" ("" : not
	// known, a manifest from before this field or a probe without sysfs).
	Firmware    string      `json:"firmware,omitempty"`
	E820        []E820Entry `json:"e820"`                  // /sys/firmware/memmap in order
	E820Digest  string      `json:"e820_digest,omitempty"` // crc32 as the kernel hashes it, %#08x
	MemoryBytes uint64      `json:"memory_bytes"`          // MemTotal
	// MemoryBlock is the kernel's memory block size (memory hotplug's
	// unit, /sys/devices/system/memory/block_size_bytes); 0: not known.
	MemoryBlock uint64      `json:"memory_block,omitempty"`
	CPU         CPU         `json:"cpu"`
	PCI         []PCIDevice `json:"pci"`
	NICs        []NIC       `json:"nics"`
	Disks       []Disk      `json:"disks"`
	DM          []DMDevice  `json:"dm,omitempty"` // device-mapper devices (LVM LVs among them)
	Mounts      []Mount     `json:"mounts"`
	Swaps       []Swap      `json:"swaps"`
	Image       *Image      `json:"image,omitempty"`   // the memory image in the bundle
	Resume      *Resume     `json:"resume,omitempty"`  // where the kernel-format image goes on the disks
	NonRAM      []PhysRange `json:"non_ram,omitempty"` // non-RAM ranges below 4 GiB carried for ACPI
	Mailbox     *Mailbox    `json:"mailbox,omitempty"`
	// PCIWindows are the root buses' memory windows of /proc/iomem
	// ([Start, End)): where the kernel places the BARs of devices found
	// by a rescan.
	PCIWindows []PhysRange `json:"pci_windows,omitempty"`
	// Pstore is the registered pstore backend ("" : none).
	Pstore string `json:"pstore,omitempty"`
}

// Kernel is the running (or image) kernel.
type Kernel struct {
	Release            string `json:"release"`
	Version            string `json:"version,omitempty"` // uname -v or the banner
	Cmdline            string `json:"cmdline,omitempty"`
	VmlinuzSHA256      string `json:"vmlinuz_sha256,omitempty"`
	InitrdSHA256       string `json:"initrd_sha256,omitempty"`
	ModulesAliasSHA256 string `json:"modules_alias_sha256,omitempty"`
	// SigEnforce: the kernel loads only signed modules
	// (/sys/module/module/parameters/sig_enforce). Lockdown is its
	// lockdown mode (/sys/kernel/security/lockdown: none, integrity,
	// confidentiality; "" : not known).
	SigEnforce bool   `json:"module_sig_enforce,omitempty"`
	Lockdown   string `json:"lockdown,omitempty"`
}

// E820Entry is one firmware memory map range; End is exclusive.
type E820Entry struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	Type  uint32 `json:"type"`           // 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable, ...
	Name  string `json:"name,omitempty"` // as /sys/firmware/memmap names it
}

// CPU is what the kernel saw of the processor.
type CPU struct {
	Vendor   string `json:"vendor"`
	Family   int    `json:"family"`
	Model    int    `json:"model"`
	Stepping int    `json:"stepping"`
	Name     string `json:"name,omitempty"`
	Count    int    `json:"count"`
	// Possible is how many CPUs the kernel can ever bring up
	// (/sys/devices/system/cpu/possible), fixed at its boot; 0: not known.
	Possible int      `json:"possible,omitempty"`
	Flags    []string `json:"flags"` // /proc/cpuinfo flags, sorted
}

// PCIDevice is one device of /sys/bus/pci/devices.
type PCIDevice struct {
	Address   string `json:"address"` // 0000:00:03.0
	Vendor    string `json:"vendor"`  // 0x1af4
	Device    string `json:"device"`
	Class     string `json:"class"` // 0x010000
	Subsystem string `json:"subsystem,omitempty"`
	Modalias  string `json:"modalias"`
	Driver    string `json:"driver,omitempty"`
}

// NIC is a network interface with a device behind it.
type NIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	Driver    string   `json:"driver,omitempty"`
	PCI       string   `json:"pci,omitempty"`
	Addresses []string `json:"addresses,omitempty"` // CIDR
	Routes    []string `json:"routes,omitempty"`
}

// Disk is a whole block device.
type Disk struct {
	Name       string      `json:"name"` // vda, sda, nvme0n1
	Path       string      `json:"path,omitempty"`
	Size       int64       `json:"size"` // bytes
	Model      string      `json:"model,omitempty"`
	Serial     string      `json:"serial,omitempty"`
	WWN        string      `json:"wwn,omitempty"`
	PCI        string      `json:"pci,omitempty"`    // controller address
	Driver     string      `json:"driver,omitempty"` // controller driver
	Table      string      `json:"table,omitempty"`  // "gpt", "mbr" or ""
	DiskGUID   string      `json:"disk_guid,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
	Stream     string      `json:"stream,omitempty"` // the bundle stream holding its blocks
	Dev        string      `json:"dev,omitempty"`    // major:minor in the source kernel
	// Movable is set by capture: no mounted filesystem and no active swap
	// sits directly on the disk or its partitions (they are reached
	// through device-mapper), so the disk can move to another controller.
	Movable bool `json:"movable,omitempty"`
	// Medium is set by the probe for a disk that boots or carries thaw
	// itself ("thaw stick"): the plan never writes it.
	Medium string `json:"medium,omitempty"`
}

// Partition is one partition of a Disk.
type Partition struct {
	Number   int    `json:"number"`
	Name     string `json:"name,omitempty"` // kernel name: vda2
	Start    int64  `json:"start"`          // bytes from the disk's start
	Size     int64  `json:"size"`
	PartUUID string `json:"partuuid,omitempty"`
	Label    string `json:"label,omitempty"`
	Type     string `json:"type,omitempty"`
	Dev      string `json:"dev,omitempty"` // major:minor in the source kernel
}

// DMDevice is a device-mapper device and its table.
type DMDevice struct {
	Name   string   `json:"name"`
	UUID   string   `json:"uuid,omitempty"`
	Dev    string   `json:"dev"` // major:minor
	Table  string   `json:"table,omitempty"`
	Slaves []string `json:"slaves,omitempty"`
	// Suspended is set by capture for the devices it suspended (with
	// lockfs) after freezing user space: the resumed capture process
	// resumes them once their tables point at the disks' new places.
	Suspended bool `json:"suspended,omitempty"`
}

// Mount is a mounted filesystem.
type Mount struct {
	Target string `json:"target"`
	Source string `json:"source"`
	FSType string `json:"fstype"`
	Dev    string `json:"dev"` // major:minor
}

// Swap is an active swap area.
type Swap struct {
	Path     string `json:"path"`
	Type     string `json:"type"`
	Size     int64  `json:"size"` // bytes
	Used     int64  `json:"used"`
	Priority int    `json:"priority"`
}

// Image describes the memory snapshot stream in the bundle.
type Image struct {
	Release      string `json:"release"`
	Pages        uint64 `json:"pages"` // swsusp_info.pages
	DataPages    uint64 `json:"data_pages"`
	ZeroPages    uint64 `json:"zero_pages"`
	MetaPages    uint64 `json:"meta_pages"`
	NumPhysPages uint64 `json:"num_physpages"`
	E820Checksum string `json:"e820_checksum"` // from the arch header, %#08x
	Stream       string `json:"stream"`
	// Platform is true for an image made in platform mode (ACPI S4,
	// SF_PLATFORM_MODE): a restorer passes it to SNAPSHOT_PLATFORM_SUPPORT.
	Platform bool `json:"platform,omitempty"`
}

// Resume says where the kernel-format image is written on the disks.
type Resume struct {
	Disk         int    `json:"disk"`      // index into Disks
	Partition    int    `json:"partition"` // 0: the whole disk
	PartUUID     string `json:"partuuid,omitempty"`
	HeaderOffset int64  `json:"header_offset"` // bytes from the disk's start to the swap header page
	// InDisk is true when the disk streams already hold the image at that
	// place (an exported, kernel-written image): restore then writes the
	// header page last instead of writing the image.
	InDisk bool `json:"in_disk"`
	// Device is the swap the image goes to, as the image kernel's resume=
	// names it: PARTUUID=… for a partition, /dev/mapper/NAME for a
	// device-mapper (LVM) swap. Set with Slots.
	Device string `json:"device,omitempty"`
	// Slots are the pages of a swap in use that the capture reserved for
	// the image after the snapshot was taken (SNAPSHOT_ALLOC_SWAP_PAGE):
	// the image, in the kernel's format, goes there and nowhere else, and
	// the resumed kernel finds them free. In swap pages from the swap
	// device's start; page 0 is its header.
	Slots []Extent `json:"slots,omitempty"`
	// Segments place the swap device's bytes on disk Disk (a partition: one
	// segment; an LVM swap: its linear table). Set with Slots.
	Segments []Segment `json:"segments,omitempty"`
}

// Extent is a run of pages.
type Extent struct {
	Start uint64 `json:"start"`
	Count uint64 `json:"count"`
}

// Segment maps Length bytes at Start of a device to DiskOffset on a disk.
type Segment struct {
	Start      int64 `json:"start"`
	Length     int64 `json:"length"`
	DiskOffset int64 `json:"disk_offset"`
}

// PhysRange is a physical memory range and the name of its bundle stream.
type PhysRange struct {
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Type   uint32 `json:"type"`
	Stream string `json:"stream,omitempty"`
}

// Mailbox is the capture process's reserved region.
type Mailbox struct {
	Nonce string   `json:"nonce"`
	PFNs  []uint64 `json:"pfns"`
}

// Marshal encodes m as indented JSON.
func (m *Manifest) Marshal() ([]byte, error) {
	return json.MarshalIndent(m, "", "  ")
}

// Parse decodes and checks a manifest.
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("manifest: version %d, this thaw reads version %d", m.Version, Version)
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Check verifies the manifest's internal consistency.
func (m *Manifest) Check() error {
	var last uint64
	for i, e := range m.E820 {
		if e.End <= e.Start {
			return fmt.Errorf("manifest: e820[%d]: end %#x not above start %#x", i, e.End, e.Start)
		}
		if i > 0 && e.Start < last {
			return fmt.Errorf("manifest: e820[%d]: start %#x overlaps the previous range (ends %#x)", i, e.Start, last)
		}
		last = e.End
	}
	for i, d := range m.Disks {
		if d.Size < 0 {
			return fmt.Errorf("manifest: disks[%d] (%s): negative size", i, d.Name)
		}
		for j, p := range d.Partitions {
			if p.Start < 0 || p.Size < 0 || p.Start+p.Size > d.Size {
				return fmt.Errorf("manifest: disks[%d] (%s) partition %d: bytes %d+%d outside the disk's %d", i, d.Name, j, p.Start, p.Size, d.Size)
			}
		}
	}
	if r := m.Resume; r != nil {
		if r.Disk < 0 || r.Disk >= len(m.Disks) {
			return fmt.Errorf("manifest: resume.disk %d: the manifest has %d disks", r.Disk, len(m.Disks))
		}
		if r.HeaderOffset < 0 || r.HeaderOffset%4096 != 0 || r.HeaderOffset >= m.Disks[r.Disk].Size {
			return fmt.Errorf("manifest: resume.header_offset %d: not a page inside disk %s", r.HeaderOffset, m.Disks[r.Disk].Name)
		}
	}
	return nil
}

// e820Names are the names /sys/firmware/memmap gives the e820 types
// (e820_type_to_string in arch/x86/kernel/e820.c).
var e820Names = map[uint32]string{
	1:          "System RAM",
	2:          "Reserved",
	3:          "ACPI Tables",
	4:          "ACPI Non-volatile Storage",
	5:          "Unusable memory",
	7:          "Persistent Memory",
	12:         "Persistent Memory (legacy)",
	0xefffffff: "Soft Reserved",
}

// E820TypeName is the name the kernel gives e820 type t, or "" if it has
// none of its own.
func E820TypeName(t uint32) string { return e820Names[t] }

// E820Type is the e820 type the kernel calls name.
func E820Type(name string) (uint32, bool) {
	for t, n := range e820Names {
		if n == name {
			return t, true
		}
	}
	return 0, false
}
