package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// Claim shields a physical range from the resumed kernel's PCI allocator.
//
// After a resume the kernel keeps the source's PCI windows and memory
// map. A rescan allocates the new devices' BARs afresh, bottom-up from the
// window's start, skipping only the window's children and the ranges of
// the source's memory map (drivers/pci/setup-res.c, kernel/resource.c,
// arch/x86/kernel/resource.c). On a machine with more RAM the window's
// start is RAM here: a BAR there is dead, and the device with it. The
// image kernel's ramoops module, given the range, requests it zone by
// zone (request_mem_region inside the window), so the allocator skips it.
// ramoops writes a 12-byte header into each zone (RAM the resumed kernel
// does not use) and dumps there only on an oops.
type Claim struct {
	Start  uint64 `json:"start"` // [Start, End)
	End    uint64 `json:"end"`
	Zone   uint64 `json:"zone"`   // bytes per ramoops zone
	Module string `json:"module"` // ramoops
	Params string `json:"params"` // its module parameters
}

// ClaimModule is the image kernel's module that makes the claim.
const ClaimModule = "ramoops"

// sectionSize is x86-64's memory section: the kernel has struct pages
// (pfn_valid) for the whole section holding its last RAM, and ramoops
// maps such a range as memory without requesting it.
const sectionSize = 128 << 20

// maxZones bounds the kernel memory the claim takes (a zone costs a few
// hundred bytes and a mapping).
const maxZones = 1 << 16

// exposed returns the ranges inside the source's PCI windows that this
// machine's memory map uses (any type) and the source's map did not
// cover: there a rescan would place BARs over RAM or firmware ranges.
func exposed(src, dst *manifest.Manifest) []manifest.PhysRange {
	var out []manifest.PhysRange
	for _, w := range src.PCIWindows {
		for _, e := range dst.E820 {
			lo, hi := max(w.Start, e.Start), min(w.End, e.End)
			if lo >= hi {
				continue
			}
			out = append(out, subtract(manifest.PhysRange{Start: lo, End: hi}, src.E820)...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	var merged []manifest.PhysRange
	for _, r := range out {
		if n := len(merged); n > 0 && r.Start <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, r.End)
			continue
		}
		merged = append(merged, manifest.PhysRange{Start: r.Start, End: r.End})
	}
	return merged
}

// subtract removes the memory map's ranges from r.
func subtract(r manifest.PhysRange, m []manifest.E820Entry) []manifest.PhysRange {
	parts := []manifest.PhysRange{r}
	for _, e := range m {
		var next []manifest.PhysRange
		for _, p := range parts {
			if e.End <= p.Start || e.Start >= p.End {
				next = append(next, p)
				continue
			}
			if p.Start < e.Start {
				next = append(next, manifest.PhysRange{Start: p.Start, End: e.Start})
			}
			if e.End < p.End {
				next = append(next, manifest.PhysRange{Start: e.End, End: p.End})
			}
		}
		parts = next
	}
	return parts
}

// zoneFor is the largest power of two up to 1 MiB dividing both start and
// length; 0 when not even a page does.
func zoneFor(start, length uint64) uint64 {
	for z := uint64(1 << 20); z >= 4096; z >>= 1 {
		if start%z == 0 && length%z == 0 {
			return z
		}
	}
	return 0
}

// NeedsRescan reports whether applying the device plan rescans the PCI
// bus: a disk redirected or a NIC rebound.
func (p *Plan) NeedsRescan() bool {
	if p == nil {
		return false
	}
	for _, d := range p.Devices {
		if d.Action == Redirect || d.Kind == "nic" && d.Action == Rebind {
			return true
		}
	}
	return false
}

// shield plans the claim that keeps the rescan's BARs out of this
// machine's RAM, or refuses the move (check pciwindow) when it cannot.
func (p *Plan) shield(src, dst *manifest.Manifest, aliases *Aliases) {
	if !p.NeedsRescan() {
		return
	}
	if len(src.PCIWindows) == 0 {
		if ram(dst.E820) > ram(src.E820) {
			p.Notes = append(p.Notes, "the capture recorded no PCI windows: if this machine's extra RAM lies in the source's PCI window, the new devices' BARs may land in it (capture again with this version of thaw)")
		}
		return
	}
	ex := exposed(src, dst)
	if len(ex) == 0 {
		return
	}
	var desc []string
	for _, r := range ex {
		desc = append(desc, fmt.Sprintf("%#x-%#x", r.Start, r.End-1))
	}
	what := fmt.Sprintf("this machine's memory map uses %s inside the source kernel's PCI window, where the rescan that finds the new devices would place their BARs", strings.Join(desc, ", "))
	fix := fmt.Sprintf("give this machine the source's RAM size (%d MiB), or move to a machine whose devices the image kernel already drives in place", ram(src.E820)>>20)
	if len(ex) > 1 {
		p.refuse("pciwindow", what+"; thaw can shield only one range", fix)
		return
	}
	r := ex[0]
	var srcEnd uint64
	for _, e := range src.E820 {
		if e.Type == 1 {
			srcEnd = max(srcEnd, e.End)
		}
	}
	if lastSection := (srcEnd + sectionSize - 1) / sectionSize * sectionSize; r.Start < lastSection {
		p.refuse("pciwindow", fmt.Sprintf("%s; it starts in the memory section of the source's last RAM (below %#x), which the resumed kernel maps as memory instead of claiming", what, lastSection), fix)
		return
	}
	if src.Pstore != "" && src.Pstore != ClaimModule {
		p.refuse("pciwindow", fmt.Sprintf("%s; the source kernel's pstore backend %s would keep ramoops from claiming it", what, src.Pstore), fix)
		return
	}
	zone := zoneFor(r.Start, r.End-r.Start)
	if zone == 0 || (r.End-r.Start)/zone > maxZones {
		p.refuse("pciwindow", fmt.Sprintf("%s; it is not aligned finely enough to claim", what), fix)
		return
	}
	if aliases == nil {
		p.refuse("pciwindow", what+"; the bundle carries no modules tree to claim it with", fix)
		return
	}
	files, err := aliases.LoadOrder(ClaimModule)
	if err != nil {
		p.refuse("pciwindow", fmt.Sprintf("%s; %v", what, err), fix)
		return
	}
	p.Claim = &Claim{Start: r.Start, End: r.End, Zone: zone, Module: ClaimModule,
		Params: fmt.Sprintf("mem_address=%#x mem_size=%#x record_size=%#x console_size=0 ftrace_size=0 pmsg_size=0 ecc=0", r.Start, r.End-r.Start, zone)}
	p.Notes = append(p.Notes, fmt.Sprintf("%s: claimed first with %s (%d zones of %d KiB)", what, ClaimModule, (r.End-r.Start)/zone, zone>>10))
	p.Modules = append(files, p.Modules...)
}
