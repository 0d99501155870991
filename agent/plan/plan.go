package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
)

// DiskMap maps a source disk to a target disk.
type DiskMap struct {
	Source     string `json:"source"`
	SourceSize int64  `json:"source_size"`
	SourcePCI  string `json:"source_pci,omitempty"`
	Target     string `json:"target,omitempty"`
	TargetSize int64  `json:"target_size,omitempty"`
	TargetPCI  string `json:"target_pci,omitempty"`
	Consent    bool   `json:"consent"` // named by thaw.disk= / --disk
}

// Driver says which module of the image kernel drives a target device.
type Driver struct {
	PCI      string `json:"pci"`
	Class    string `json:"class"`
	Kind     string `json:"kind"` // disk, nic, other
	Modalias string `json:"modalias"`
	Module   string `json:"module,omitempty"` // "" : none
	Builtin  bool   `json:"builtin,omitempty"`
	// SeenOnSource: no alias names the driver (a built-in driver's PCI
	// table is not in modules.builtin.modinfo before Linux 6.13), but the
	// image kernel had Module bound to a device with this modalias.
	SeenOnSource bool `json:"seen_on_source,omitempty"`
	// Pack names the driver pack the module comes from ("" : the image
	// kernel's own).
	Pack string `json:"pack,omitempty"`
}

// PackUse is the driver pack a plan takes modules from.
type PackUse struct {
	File     string   `json:"file"` // RELEASE.pack
	Release  string   `json:"release"`
	Vermagic string   `json:"vermagic"`
	Built    string   `json:"built,omitempty"`
	Modules  []string `json:"modules"` // the pack's modules the plan loads
}

// Plan is the verdict and everything it rests on.
type Plan struct {
	OK         bool      `json:"ok"`
	Refusals   []Refusal `json:"refusals,omitempty"`
	Notes      []string  `json:"notes,omitempty"`
	MissingCPU []string  `json:"missing_cpu_flags,omitempty"`
	SourceRAM  uint64    `json:"source_ram"`
	TargetRAM  uint64    `json:"target_ram"`
	SameMap    bool      `json:"same_memory_map"`
	Disks      []DiskMap `json:"disks"`
	Drivers    []Driver  `json:"drivers"`
	Resume     string    `json:"resume"` // direct or kexec
	ResumeWhy  string    `json:"resume_why"`
	// Devices is the device plan: each source disk and NIC, its place
	// here and what the resumed server does about it.
	Devices []Device `json:"devices"`
	// Modules are the image kernel's module files (paths in its modules
	// tree) that the devices here need, in load order: the agent carries
	// them into the image's memory.
	Modules []string `json:"modules,omitempty"`
	// HotAdd is this machine's extra RAM given to the resumed kernel;
	// nil: none.
	HotAdd *HotAdd `json:"hot_add,omitempty"`
	// UnusedRAM is what a driver pack's thaw_hotadd would add (whole
	// memory blocks) when the plan has none.
	UnusedRAM uint64 `json:"unused_ram,omitempty"`
	// UnusedCPUs are the CPUs here the image kernel could run on that a
	// driver pack's thaw_hotadd would bring online.
	UnusedCPUs int `json:"unused_cpus,omitempty"`
	// PlainDisks are the moving source disks with filesystems or swap on
	// plain partitions that a driver pack's thaw_redirect would move.
	PlainDisks []string `json:"plain_disks,omitempty"`
	// Redirect loads the pack's thaw_redirect for the moving disks on
	// plain partitions; nil: none.
	Redirect *Redirection `json:"redirect,omitempty"`
	// Pack is the driver pack whose modules the plan loads; nil: none.
	Pack *PackUse `json:"pack,omitempty"`
	// Claim keeps the rescan's BARs out of this machine's RAM beyond the
	// source's map; nil when nothing needs it.
	Claim *Claim `json:"claim,omitempty"`
}

// Options carry the operator's choices.
type Options struct {
	// Disks are the target disks named by thaw.disk= (or --disk), in the
	// bundle's disk order: the consent to overwrite them.
	Disks []string
	// HasData reports whether a target disk holds data (a partition table
	// or non-zero blocks); nil treats every disk as holding data.
	HasData func(name string) bool
	// Pack is a driver pack for the image kernel, verified and checked
	// against it (driverpack.Read, Pack.Check); nil: none.
	Pack *driverpack.Pack
}

func (p *Plan) refuse(check Check, reason, hint string) {
	p.Refusals = append(p.Refusals, Refusal{check, reason, hint})
}

func ram(m []manifest.E820Entry) uint64 {
	var n uint64
	for _, e := range m {
		if e.Type == 1 {
			n += e.End - e.Start
		}
	}
	return n
}

func kindOf(class string) string {
	c := strings.TrimPrefix(class, "0x")
	switch {
	case strings.HasPrefix(c, "01"):
		return "disk"
	case strings.HasPrefix(c, "02"):
		return "nic"
	}
	return "other"
}

// topologyFlags are /proc/cpuinfo flags that say how many threads a package
// has (CPUID 1 EDX HTT; AMD's CmpLegacy), read by the kernel when it
// enumerates CPUs at boot and never used as an instruction: a machine with
// fewer CPUs lacks them and runs the image all the same.
var topologyFlags = map[string]bool{"ht": true, "cmp_legacy": true}

// Make compares the source's manifest src with the target's profile dst.
// aliases is the image kernel's modalias table (nil: unknown).
func Make(src, dst *manifest.Manifest, aliases *Aliases, opt Options) *Plan {
	p := &Plan{SourceRAM: ram(src.E820), TargetRAM: ram(dst.E820)}

	// CPU: every feature the image kernel saw must be there, but for the
	// bits that describe the package's threads rather than an instruction
	// (QEMU sets them for -smp with more than one CPU, maxcpus included).
	have := map[string]bool{}
	for _, f := range dst.CPU.Flags {
		have[f] = true
	}
	for _, f := range src.CPU.Flags {
		if !have[f] && !topologyFlags[f] {
			p.MissingCPU = append(p.MissingCPU, f)
		}
	}
	if len(p.MissingCPU) > 0 {
		p.refuse("cpu", fmt.Sprintf("this CPU (%s) lacks %d feature(s) the image kernel uses: %s", dst.CPU.Name, len(p.MissingCPU), strings.Join(p.MissingCPU, " ")),
			"restore on a CPU model with these features (a VM: a CPU model that passes them through); a resumed kernel would hang without a word")
	}
	if src.CPU.Vendor != "" && dst.CPU.Vendor != "" && src.CPU.Vendor != dst.CPU.Vendor {
		p.refuse("cpu", fmt.Sprintf("the image ran on %s, this CPU is %s", src.CPU.Vendor, dst.CPU.Vendor), "restore on a CPU of the same vendor")
	}

	// Firmware: the resumed kernel keeps the boot's firmware interface
	// (EFI runtime services and the EFI memory map, or the BIOS's ACPI
	// layout); it cannot change under it.
	if src.Firmware != "" && dst.Firmware != "" && src.Firmware != dst.Firmware {
		p.refuse(CheckFirmware, fmt.Sprintf("the image was captured on a machine booted by %s, this machine booted by %s: the resumed kernel would call firmware that is not there", firmwareName(src.Firmware), firmwareName(dst.Firmware)),
			fmt.Sprintf("boot this machine by %s (its firmware setup: legacy or CSM boot for BIOS), or restore on a machine that boots as the source did", firmwareName(src.Firmware)))
	}

	// Memory: every source RAM range must be RAM here, by images/memmap's
	// rule (RAM ranges here that touch count as one), as kexec checks it.
	switch {
	case len(src.E820) == 0:
		p.SameMap = src.E820Digest != "" && src.E820Digest == dst.E820Digest
		if !p.SameMap {
			p.refuse("memory", "the bundle records no memory map (an export), only its digest "+src.E820Digest+", and this machine's map differs ("+dst.E820Digest+"): it cannot be replayed",
				"restore an export on a machine with the source's memory map, or capture the source with thaw capture")
		}
	default:
		p.SameMap = src.E820Digest == dst.E820Digest
		here := memmap.RAM(dst.E820)
		for _, e := range src.E820 {
			if e.Type == 1 && !memmap.Covers(here, e.Start, e.End) {
				p.refuse("memory", fmt.Sprintf("source RAM %#x-%#x (%d MiB) is not RAM on this machine (%d MiB of RAM)", e.Start, e.End-1, (e.End-e.Start)>>20, p.TargetRAM>>20),
					"restore on a machine with at least as much RAM at the same addresses")
			}
		}
	}
	if p.SameMap {
		p.Resume, p.ResumeWhy = "direct", "the memory maps are identical: this kernel can restore the image itself"
	} else {
		p.Resume, p.ResumeWhy = "kexec", "the memory maps differ: the image must be restored by a kernel booted with the source's memory map (e820 replay)"
	}

	// Disks: explicit mapping, else an unambiguous size match.
	used := map[string]bool{}
	byName := map[string]manifest.Disk{}
	for _, d := range dst.Disks {
		byName[d.Name] = d
	}
	for i, s := range src.Disks {
		dm := DiskMap{Source: s.Name, SourceSize: s.Size, SourcePCI: s.PCI}
		var t *manifest.Disk
		if i < len(opt.Disks) {
			name := strings.TrimPrefix(opt.Disks[i], "/dev/")
			if d, ok := byName[name]; ok && d.Medium != "" {
				p.refuse(CheckMedium, fmt.Sprintf("thaw.disk= names %s, the %s this agent runs from", opt.Disks[i], d.Medium),
					"name the server's target disk instead (this machine's disks: "+diskNames(writable(dst.Disks))+"); the stick is only read, never written")
			} else if ok {
				t, dm.Consent = &d, true
			} else {
				p.refuse("disk", fmt.Sprintf("thaw.disk= names %s, which this machine does not have", opt.Disks[i]), "name one of: "+diskNames(writable(dst.Disks)))
			}
		} else if len(opt.Disks) == 0 {
			var fits []manifest.Disk
			for _, d := range dst.Disks {
				if !used[d.Name] && d.Size >= s.Size && d.Medium == "" {
					fits = append(fits, d)
				}
			}
			switch {
			case len(fits) == 1:
				t = &fits[0]
			case len(fits) == 0:
				p.refuse("disk", fmt.Sprintf("no disk here holds source disk %s (%d MiB)", s.Name, s.Size>>20), "attach a disk at least that large")
			default:
				p.refuse("disk", fmt.Sprintf("source disk %s (%d MiB) could go to %s", s.Name, s.Size>>20, diskNames(fits)), "choose with thaw.disk=")
			}
		} else {
			p.refuse("disk", fmt.Sprintf("thaw.disk= names %d disk(s), the bundle carries %d", len(opt.Disks), len(src.Disks)), "name one target disk per source disk, in order")
		}
		if t != nil {
			used[t.Name] = true
			dm.Target, dm.TargetSize, dm.TargetPCI = t.Name, t.Size, t.PCI
			if t.Size < s.Size {
				p.refuse("disk", fmt.Sprintf("%s holds %d MiB, source disk %s held %d MiB", t.Name, t.Size>>20, s.Name, s.Size>>20), "give a disk at least as large")
			}
			if !dm.Consent && (opt.HasData == nil || opt.HasData(t.Name)) {
				p.refuse("disk", fmt.Sprintf("%s holds data and was not named", t.Name), "name it with thaw.disk="+t.Name+" to consent to overwriting it")
			}
		}
		p.Disks = append(p.Disks, dm)
	}

	// Drivers: each target PCI device against the image kernel's aliases,
	// then the driver pack's.
	if opt.Pack != nil && aliases != nil {
		aliases = aliases.WithPack(opt.Pack)
	}
	for _, d := range dst.PCI {
		dr := Driver{PCI: d.Address, Class: d.Class, Kind: kindOf(d.Class), Modalias: d.Modalias}
		if aliases != nil && d.Modalias != "" {
			dr.Module, dr.Builtin = aliases.Match(d.Modalias)
			if aliases.FromPack(dr.Module) {
				dr.Pack = driverpack.FileName(opt.Pack.Header.Release)
			}
		}
		if dr.Module == "" {
			for _, sd := range src.PCI {
				if sd.Modalias == d.Modalias && d.Modalias != "" && sd.Driver != "" {
					dr.Module, dr.SeenOnSource = sd.Driver, true
					break
				}
			}
		}
		p.Drivers = append(p.Drivers, dr)
		if aliases != nil && dr.Module == "" && dr.Kind == "nic" {
			p.Notes = append(p.Notes, fmt.Sprintf("the image kernel has no driver for the NIC %s (%s)", d.Address, d.Modalias))
		}
	}
	if aliases == nil {
		p.Notes = append(p.Notes, "the bundle carries no modules tree: drivers not checked")
	}
	sort.Slice(p.Drivers, func(i, j int) bool { return p.Drivers[i].PCI < p.Drivers[j].PCI })
	p.devices(src, dst, aliases)
	p.hotAdd(src, dst, aliases)
	p.cpus(src, dst, aliases)
	p.packs(src, aliases, opt.Pack)
	p.shield(src, dst, aliases)
	if p.HotAdd != nil {
		// The RAM is added before the claim is made: the claim is not
		// needed once the window moved up.
		p.HotAdd.Params = p.HotAdd.params()
		f := PackFile(HotAddModule)
		p.Modules = append([]string{f}, slices.DeleteFunc(p.Modules, func(m string) bool { return m == f })...)
	}
	p.OK = len(p.Refusals) == 0
	return p
}

// packs records the driver pack's modules the plan loads, and refuses
// them where the image kernel would: under lockdown or with module
// signatures enforced, a module Debian did not sign does not load.
func (p *Plan) packs(src *manifest.Manifest, aliases *Aliases, pk *driverpack.Pack) {
	var used []string
	for _, f := range p.Modules {
		if IsPackFile(f) {
			used = append(used, ModuleName(f))
		}
	}
	if len(used) == 0 {
		return
	}
	h := pk.Header
	p.Pack = &PackUse{File: driverpack.FileName(h.Release), Release: h.Release, Vermagic: h.Vermagic, Modules: used,
		Built: strings.TrimSpace(h.Built.Compiler + "; " + h.Built.Headers)}
	k := src.Kernel
	switch {
	case k.SigEnforce || strings.Contains(" "+k.Cmdline+" ", " module.sig_enforce=1 "):
		p.refuse(CheckPack, fmt.Sprintf("the image kernel enforces module signatures (module.sig_enforce): it would refuse the pack's modules %s, which Debian's key did not sign", strings.Join(used, " ")),
			"restore onto hardware the image kernel drives, or boot the source without module.sig_enforce=1 and capture it again")
	case k.Lockdown != "" && k.Lockdown != "none":
		p.refuse(CheckPack, fmt.Sprintf("the image kernel runs under lockdown (%s, as Secure Boot turns on): it would refuse the pack's modules %s, which Debian's key did not sign", k.Lockdown, strings.Join(used, " ")),
			"restore onto hardware the image kernel drives, or boot the source without Secure Boot (or with lockdown=none) and capture it again")
	default:
		p.Notes = append(p.Notes, fmt.Sprintf("driver pack %s: %s, not signed by Debian: loading them taints the resumed kernel (E, unsigned module)", p.Pack.File, strings.Join(used, " ")))
	}
}

// writable is ds without the disks thaw runs from.
func writable(ds []manifest.Disk) []manifest.Disk {
	var out []manifest.Disk
	for _, d := range ds {
		if d.Medium == "" {
			out = append(out, d)
		}
	}
	return out
}

func diskNames(ds []manifest.Disk) string {
	var n []string
	for _, d := range ds {
		n = append(n, fmt.Sprintf("%s (%d MiB)", d.Name, d.Size>>20))
	}
	return strings.Join(n, ", ")
}

func firmwareName(f string) string {
	if f == "uefi" {
		return "UEFI"
	}
	return "BIOS"
}
