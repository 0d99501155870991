package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/manifest"
)

const probeHelp = `
Prints this machine's profile, read from /proc, /sys and the disks:

  kernel         release, version, command line; SHA-256 of
                 /boot/vmlinuz-RELEASE, /boot/initrd.img-RELEASE and
                 /lib/modules/RELEASE/modules.alias when present
  memory map     /sys/firmware/memmap, and the e820 digest an x86 kernel
                 stores in its hibernation image: a kernel resumes an image
                 only on a machine whose firmware map has the same digest
  memory         MemTotal
  cpu            vendor, family, model, stepping, name, processors, flags
  pci            every PCI device with its IDs, class and driver
  nics           interfaces with a device behind them: MAC, driver, PCI
                 address, addresses, IPv4 routes
  disks          whole disks: size, model, serial, WWN, controller and its
                 driver, partition table, partitions with their PARTUUIDs
  device-mapper  dm devices (LVM volumes among them), their tables, slaves
  mounts         mounted filesystems on block devices
  swaps          active swap areas

The restore agent probes the machine it runs on in exactly this way and
compares the result with the manifest of the bundle it is about to restore:
this is the profile it will see here. Partition tables (read from /dev) and
device-mapper tables (dmsetup) need root; without it they are left out.

--json prints the profile as the manifest JSON a bundle carries
(images/manifest), with kind "probe". --root reads proc/, sys/, boot/ and
lib/modules/ under another directory (a copied tree) instead of this machine.
`

func runProbe(args []string) error {
	fs := newFlags("probe", "[--json] [--root DIR]", probeHelp)
	asJSON := fs.Bool("json", false, "print the profile as manifest JSON")
	root := fs.String("root", "/", "read proc/, sys/, boot/ and lib/modules/ under `DIR`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return &exitError{2, fmt.Errorf("probe takes no arguments, got %q", pos)}
	}
	m, err := probe.Probe(*root)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "probe: "))
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	printProbe(os.Stdout, m)
	if *root == "/" && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stdout, "\n(not root: partition tables and device-mapper tables were not read)")
	}
	return nil
}

// probeGPTTypes names the GPT partition types a Linux server commonly has.
var probeGPTTypes = map[string]string{
	"c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
	"21686148-6449-6e6f-744e-656564454649": "BIOS boot",
	"0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
	"4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
	"bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
	"0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
	"e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
	"a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
	"ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
	"ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
}

// probeMBRTypes names the MBR partition types a Linux server commonly has.
var probeMBRTypes = map[string]string{
	"0x05": "extended", "0x0f": "extended", "0x07": "NTFS/exFAT", "0x0b": "FAT32", "0x0c": "FAT32",
	"0x82": "Linux swap", "0x83": "Linux", "0x85": "Linux extended", "0x8e": "Linux LVM",
	"0xef": "EFI system", "0xfd": "Linux RAID",
}

func printProbe(w io.Writer, m *manifest.Manifest) {
	fmt.Fprintf(w, "%s  probed %s\n", orUnknown(m.Hostname), m.Created)

	k := m.Kernel
	fmt.Fprintf(w, "\nkernel         %s  %s\n", orUnknown(k.Release), k.Version)
	fmt.Fprintf(w, "  cmdline        %s\n", k.Cmdline)
	for _, f := range []struct{ name, sum string }{
		{"vmlinuz", k.VmlinuzSHA256}, {"initrd", k.InitrdSHA256}, {"modules.alias", k.ModulesAliasSHA256},
	} {
		fmt.Fprintf(w, "  %-14s %s\n", f.name, probeSum(f.sum))
	}

	fmt.Fprintf(w, "\nmemory         %s (MemTotal)\n", probeSize(int64(m.MemoryBytes)))

	if len(m.E820) == 0 {
		fmt.Fprintf(w, "\nmemory map     none (no /sys/firmware/memmap: a container, or not x86?)\n")
	} else {
		var ram uint64
		for _, e := range m.E820 {
			if e.Type == 1 {
				ram += e.End - e.Start
			}
		}
		fmt.Fprintf(w, "\nmemory map     %d ranges, %s System RAM, e820 digest %s\n", len(m.E820), probeSize(int64(ram)), m.E820Digest)
		for _, e := range m.E820 {
			name := e.Name
			if name == "" {
				name = manifest.E820TypeName(e.Type)
			}
			fmt.Fprintf(w, "  %#016x-%#016x %10s  %s (%d)\n", e.Start, e.End-1, probeMiB(e.End-e.Start), name, e.Type)
		}
	}

	c := m.CPU
	fmt.Fprintf(w, "\ncpu            %s family %d model %d stepping %d, %q\n", orUnknown(c.Vendor), c.Family, c.Model, c.Stepping, c.Name)
	fmt.Fprintf(w, "  %d processors, %d flags\n", c.Count, len(c.Flags))

	fmt.Fprintf(w, "\npci            %s\n", probeCount(len(m.PCI), "device"))
	for _, d := range m.PCI {
		drv := d.Driver
		if drv == "" {
			drv = "-"
		}
		fmt.Fprintf(w, "  %s  %s:%s  class %s  %s\n", d.Address, strings.TrimPrefix(d.Vendor, "0x"), strings.TrimPrefix(d.Device, "0x"), strings.TrimPrefix(d.Class, "0x"), drv)
	}

	fmt.Fprintf(w, "\nnics           %s\n", probeCount(len(m.NICs), "interface"))
	for _, n := range m.NICs {
		fmt.Fprintf(w, "  %-10s %s  %s  pci %s\n", n.Name, n.MAC, orUnknown(n.Driver), probeNone(n.PCI))
		for _, a := range n.Addresses {
			fmt.Fprintf(w, "    address  %s\n", a)
		}
		for _, r := range n.Routes {
			fmt.Fprintf(w, "    route    %s\n", r)
		}
	}

	fmt.Fprintf(w, "\ndisks          %s\n", probeCount(len(m.Disks), "disk"))
	for _, d := range m.Disks {
		var facts []string
		if d.Model != "" {
			facts = append(facts, fmt.Sprintf("%q", d.Model))
		}
		if d.Serial != "" {
			facts = append(facts, "serial "+d.Serial)
		}
		if d.WWN != "" {
			facts = append(facts, "wwn "+d.WWN)
		}
		fmt.Fprintf(w, "  %-10s %s  %s\n", d.Name, probeSize(d.Size), strings.Join(facts, "  "))
		ctrl := "no PCI controller"
		if d.PCI != "" {
			ctrl = "pci " + d.PCI + " " + orUnknown(d.Driver)
		}
		table := "no partition table read"
		switch d.Table {
		case "gpt":
			table = "gpt, disk guid " + d.DiskGUID
		case "mbr":
			table = "mbr, disk signature " + d.DiskGUID
		}
		fmt.Fprintf(w, "    %s; %s\n", ctrl, table)
		for _, p := range d.Partitions {
			name := p.Name
			if name == "" {
				name = "(not in the kernel's list)"
			}
			line := fmt.Sprintf("    %2d %-10s start %-10s size %-10s", p.Number, name, probeSize(p.Start), probeSize(p.Size))
			if p.PartUUID != "" {
				line += "  partuuid " + p.PartUUID
			}
			if p.Label != "" {
				line += fmt.Sprintf("  label %q", p.Label)
			}
			if p.Type != "" {
				t := probeGPTTypes[p.Type]
				if t == "" {
					t = probeMBRTypes[p.Type]
				}
				if t == "" {
					t = "type " + p.Type
				}
				line += "  " + t
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}

	fmt.Fprintf(w, "\ndevice-mapper  %s\n", probeCount(len(m.DM), "device"))
	for _, d := range m.DM {
		fmt.Fprintf(w, "  %-20s %-7s on %s  uuid %s\n", d.Name, d.Dev, probeNone(strings.Join(d.Slaves, ",")), probeNone(d.UUID))
		for _, line := range strings.Split(d.Table, "\n") {
			if line != "" {
				fmt.Fprintf(w, "    table  %s\n", line)
			}
		}
	}

	fmt.Fprintf(w, "\nmounts         %s\n", probeCount(len(m.Mounts), "block filesystem"))
	for _, mt := range m.Mounts {
		fmt.Fprintf(w, "  %-20s %-24s %-6s %s\n", mt.Target, mt.Source, mt.FSType, mt.Dev)
	}

	fmt.Fprintf(w, "\nswaps          %s\n", probeCount(len(m.Swaps), "area"))
	for _, s := range m.Swaps {
		fmt.Fprintf(w, "  %-20s %-9s %s, %s used, priority %d\n", s.Path, s.Type, probeSize(s.Size), probeSize(s.Used), s.Priority)
	}
}

// probeSum shows a SHA-256 by its first 16 hex digits.
func probeSum(s string) string {
	switch {
	case s == "":
		return "not found"
	case len(s) > 16:
		return "sha256 " + s[:16] + "…"
	}
	return "sha256 " + s
}

func probeNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func probeCount(n int, what string) string {
	switch n {
	case 0:
		return "none"
	case 1:
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// probeMiB shows a memory range's size in MiB, or KiB below one MiB.
func probeMiB(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n%1024 == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// probeSize shows a byte count in the largest binary unit that keeps it at
// 1 or more, with one decimal unless exact.
func probeSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i, d := 0, int64(1)
	for i+1 < len(units) && n >= d<<10 {
		i, d = i+1, d<<10
	}
	if n%d == 0 {
		return fmt.Sprintf("%d %s", n/d, units[i])
	}
	s := fmt.Sprintf("%.1f", float64(n)/float64(d))
	if s == "1024.0" && i+1 < len(units) {
		return "1.0 " + units[i+1]
	}
	return s + " " + units[i]
}
