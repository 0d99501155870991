package probe

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/images/manifest"
)

// pciAddr matches a PCI device's name in sysfs: domain:bus:slot.function.
var pciAddr = regexp.MustCompile(`^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// pciParent resolves a sysfs device link and walks up from it to the nearest
// PCI device: its address, its directory and the path element just below it
// (the virtio device of a virtio-pci function). All are "" when there is no
// PCI device above.
func pciParent(link string) (addr, dir, child string) {
	real, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", "", ""
	}
	for d := real; ; d = filepath.Dir(d) {
		up := filepath.Dir(d)
		if up == d {
			return "", "", ""
		}
		if b := filepath.Base(d); pciAddr.MatchString(b) {
			if child != "" {
				child = filepath.Join(d, child)
			}
			return b, d, child
		}
		child = filepath.Base(d)
	}
}

// controller is the PCI address and driver behind a device link. A virtio
// function's PCI driver is the generic virtio-pci: the driver of the virtio
// device on it (virtio_blk, virtio_scsi, virtio_net) says more.
func controller(link string) (addr, driver string) {
	addr, dir, child := pciParent(link)
	if addr == "" {
		return "", ""
	}
	driver = linkBase(filepath.Join(dir, "driver"))
	if driver == "virtio-pci" && strings.HasPrefix(filepath.Base(child), "virtio") {
		if d := linkBase(filepath.Join(child, "driver")); d != "" {
			driver = d
		}
	}
	return addr, driver
}

func (p *prober) pci(m *manifest.Manifest) error {
	dir := p.path("sys/bus/pci/devices")
	names, err := readDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		d := filepath.Join(dir, n)
		dev := manifest.PCIDevice{Address: n, Driver: linkBase(filepath.Join(d, "driver"))}
		for _, f := range []struct {
			name string
			to   *string
		}{{"vendor", &dev.Vendor}, {"device", &dev.Device}, {"class", &dev.Class}, {"modalias", &dev.Modalias}} {
			if *f.to, err = optional(filepath.Join(d, f.name)); err != nil {
				return err
			}
		}
		sv, sd := attr(filepath.Join(d, "subsystem_vendor")), attr(filepath.Join(d, "subsystem_device"))
		if sv != "" || sd != "" {
			dev.Subsystem = sv + ":" + sd
		}
		m.PCI = append(m.PCI, dev)
	}
	sort.Slice(m.PCI, func(i, j int) bool { return m.PCI[i].Address < m.PCI[j].Address })
	return nil
}

func (p *prober) nics(m *manifest.Manifest) error {
	routes, err := p.routes()
	if err != nil {
		return err
	}
	dir := p.path("sys/class/net")
	names, err := readDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		d := filepath.Join(dir, n)
		link := filepath.Join(d, "device")
		if n == "lo" {
			continue
		}
		if _, err := os.Lstat(link); err != nil {
			continue // virtual: bridges, bonds, tunnels, veth, ifb
		}
		nic := manifest.NIC{
			Name:   n,
			MAC:    attr(filepath.Join(d, "address")),
			Driver: linkBase(filepath.Join(link, "driver")),
			Routes: routes[n],
		}
		nic.PCI, _, _ = pciParent(link)
		if p.live {
			if ifc, err := net.InterfaceByName(n); err == nil {
				addrs, err := ifc.Addrs()
				if err != nil {
					return fmt.Errorf("addresses of %s: %w", n, err)
				}
				for _, a := range addrs {
					nic.Addresses = append(nic.Addresses, a.String())
				}
			}
		}
		m.NICs = append(m.NICs, nic)
	}
	return nil
}

// notDisks are the kernel name prefixes of block devices that hold no data
// of their own on a disk: loop, RAM and compressed-RAM disks, optical
// drives, device-mapper and MD arrays (listed as their members), NBD.
var notDisks = []string{"loop", "ram", "zram", "dm-", "sr", "md", "nbd"}

func (p *prober) disks(m *manifest.Manifest) error {
	dir := p.path("sys/block")
	names, err := readDir(dir)
	if err != nil {
		return err
	}
next:
	for _, n := range names {
		for _, pre := range notDisks {
			if strings.HasPrefix(n, pre) {
				continue next
			}
		}
		d, err := p.disk(filepath.Join(dir, n), n)
		if err != nil {
			return err
		}
		m.Disks = append(m.Disks, d)
	}
	return nil
}

// sectors reads a sysfs count of 512-byte sectors as bytes.
func sectors(path string) (int64, error) {
	s, err := optional(path)
	if err != nil || s == "" {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > 1<<54 {
		return 0, fmt.Errorf("%s: %q is not a sector count", path, s)
	}
	return v * 512, nil
}

func (p *prober) disk(d, name string) (manifest.Disk, error) {
	disk := manifest.Disk{Name: name, Path: "/dev/" + name}
	var err error
	if disk.Size, err = sectors(filepath.Join(d, "size")); err != nil {
		return disk, err
	}
	if disk.Dev, err = optional(filepath.Join(d, "dev")); err != nil {
		return disk, err
	}
	link := filepath.Join(d, "device")
	dev := link
	disk.PCI, disk.Driver = controller(link)
	if disk.PCI == "" {
		// A multipath NVMe namespace hangs off its subsystem, which links
		// to its controllers (nvme0, ...): take the first.
		ctrls, _ := filepath.Glob(filepath.Join(link, "nvme[0-9]*"))
		for _, c := range ctrls {
			if fi, err := os.Lstat(c); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				disk.PCI, disk.Driver = controller(c)
				break
			}
		}
	}
	disk.Model = attr(filepath.Join(dev, "model"))
	disk.Serial = first(attr(filepath.Join(dev, "serial")), attr(filepath.Join(d, "serial")), vpdSerial(filepath.Join(dev, "vpd_pg80")))
	disk.WWN = first(attr(filepath.Join(dev, "wwid")), attr(filepath.Join(d, "wwid")))

	names, err := readDir(d)
	if err != nil {
		return disk, err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, name) {
			continue
		}
		pd := filepath.Join(d, n)
		num, err := optional(filepath.Join(pd, "partition"))
		if err != nil {
			return disk, err
		}
		if num == "" {
			continue
		}
		part := manifest.Partition{Name: n}
		if part.Number, err = strconv.Atoi(num); err != nil {
			return disk, fmt.Errorf("%s: %w", filepath.Join(pd, "partition"), err)
		}
		if part.Start, err = sectors(filepath.Join(pd, "start")); err != nil {
			return disk, err
		}
		if part.Size, err = sectors(filepath.Join(pd, "size")); err != nil {
			return disk, err
		}
		if part.Dev, err = optional(filepath.Join(pd, "dev")); err != nil {
			return disk, err
		}
		disk.Partitions = append(disk.Partitions, part)
	}
	sort.Slice(disk.Partitions, func(i, j int) bool { return disk.Partitions[i].Number < disk.Partitions[j].Number })
	if p.live {
		lbs := 512
		if v, err := strconv.Atoi(attr(filepath.Join(d, "queue/logical_block_size"))); err == nil && v >= 512 {
			lbs = v
		}
		if f, err := os.Open(disk.Path); err == nil {
			readTable(&disk, f, lbs)
			f.Close()
		}
	}
	if stick.IsMedium(disk) {
		disk.Medium = stick.Medium
	}
	return disk, nil
}

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// vpdSerial is the unit serial number of a SCSI VPD page 0x80 (a 4-byte
// header, then the serial), "" if the page is unreadable or not that page.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if n > len(b)-4 {
		n = len(b) - 4
	}
	return strings.TrimSpace(strings.Trim(string(b[4:4+n]), "\x00"))
}

func (p *prober) dm(m *manifest.Manifest) error {
	dir := p.path("sys/block")
	names, err := readDir(dir)
	if err != nil {
		return err
	}
	dmsetup := ""
	if p.live {
		dmsetup, _ = exec.LookPath("dmsetup")
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "dm-") {
			continue
		}
		d := filepath.Join(dir, n)
		dev := manifest.DMDevice{}
		for _, f := range []struct {
			name string
			to   *string
		}{{"dm/name", &dev.Name}, {"dm/uuid", &dev.UUID}, {"dev", &dev.Dev}} {
			if *f.to, err = optional(filepath.Join(d, f.name)); err != nil {
				return err
			}
		}
		if dev.Name == "" {
			dev.Name = n
		}
		if dev.Slaves, err = readDir(filepath.Join(d, "slaves")); err != nil {
			return err
		}
		if dmsetup != "" {
			if out, err := exec.Command(dmsetup, "table", dev.Name).Output(); err == nil {
				// dmsetup hides keys unless --showkeys; the manifest
				// never holds one, whatever dmsetup does.
				dev.Table = dm.RedactTable(strings.TrimSpace(string(out)))
			}
		}
		m.DM = append(m.DM, dev)
	}
	return nil
}
