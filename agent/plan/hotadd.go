package plan

import (
	"fmt"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// HotAddModule is the driver pack's module that adds this machine's extra
// RAM to the resumed kernel (boot/packbuild/hotadd/thaw_hotadd.c).
const HotAddModule = "thaw_hotadd"

// HotAdd is what of this machine the source lacked and the resumed kernel
// is given by the pack's thaw_hotadd, loaded before the PCI rescan: RAM
// beyond the source's memory map, in whole memory blocks, and CPUs beyond
// the source's, up to the kernel's possible set. The capture process
// onlines both.
type HotAdd struct {
	Module string               `json:"module"`
	Ranges []manifest.PhysRange `json:"ranges,omitempty"` // whole blocks, [Start, End)
	Block  uint64               `json:"block"`            // the resumed kernel's memory block size
	Bytes  uint64               `json:"bytes"`
	// Windows are the source's PCI root windows that reach into what is
	// RAM here, moved up to start above it before the RAM is added.
	Windows []WindowMove `json:"windows,omitempty"`
	// CPUs is how many CPUs come online beyond the source's: the ACPI
	// processors present here that the kernel's possible set has room for.
	CPUs   int    `json:"cpus,omitempty"`
	Params string `json:"params"`
}

// WindowMove moves the PCI root window that starts at From to start at To;
// its end stays.
type WindowMove struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// Frees reports whether, once the windows moved, [start, end) lies below
// every window that held it: the rescan's BARs no longer reach it.
func (h *HotAdd) Frees(start, end uint64) bool {
	if h == nil {
		return false
	}
	for _, w := range h.Windows {
		if w.From <= start && end <= w.To {
			return true
		}
	}
	return false
}

// What says what is added: "512 MiB of RAM", "1 CPU(s)", or both.
func (h *HotAdd) What() string {
	var w []string
	if h.Bytes > 0 {
		w = append(w, fmt.Sprintf("%d MiB of RAM", h.Bytes>>20))
	}
	if h.CPUs > 0 {
		w = append(w, fmt.Sprintf("%d CPU(s)", h.CPUs))
	}
	return strings.Join(w, " and ")
}

// params are the module's parameters.
func (h *HotAdd) params() string {
	var ps []string
	if len(h.Windows) > 0 {
		var ws []string
		for _, w := range h.Windows {
			ws = append(ws, fmt.Sprintf("%x-%x", w.From, w.To))
		}
		ps = append(ps, "windows="+strings.Join(ws, ","))
	}
	if len(h.Ranges) > 0 {
		var rs []string
		for _, r := range h.Ranges {
			rs = append(rs, fmt.Sprintf("%x-%x", r.Start, r.End))
		}
		ps = append(ps, "ranges="+strings.Join(rs, ","))
	}
	if h.CPUs > 0 {
		ps = append(ps, "cpus=1")
	}
	return strings.Join(ps, " ")
}

// mib is bytes in MiB for a message.
func mib(n uint64) uint64 { return n >> 20 }

// hotAdd plans giving the resumed kernel this machine's RAM beyond the
// source's map, or notes what it would take. The module goes first: the
// memory must be RAM in the kernel's eyes before the rescan places BARs.
func (p *Plan) hotAdd(src, dst *manifest.Manifest, aliases *Aliases) {
	var extra []manifest.PhysRange
	for _, e := range dst.E820 {
		if e.Type != 1 || e.End <= 1<<20 {
			continue
		}
		extra = append(extra, subtract(manifest.PhysRange{Start: max(e.Start, 1<<20), End: e.End}, src.E820)...)
	}
	var total uint64
	for _, r := range extra {
		total += r.End - r.Start
	}
	if total < 1<<20 {
		return
	}
	block := src.MemoryBlock
	if block == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("this machine has %d MiB of RAM the source's map lacks; the capture recorded no memory block size, so it stays unused (capture again with this version of thaw)", mib(total)))
		return
	}
	h := &HotAdd{Module: HotAddModule, Block: block}
	for _, r := range extra {
		s := (r.Start + block - 1) / block * block
		e := r.End / block * block
		if e > s {
			h.Ranges = append(h.Ranges, manifest.PhysRange{Start: s, End: e})
			h.Bytes += e - s
		}
	}
	if h.Bytes == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("this machine's %d MiB of RAM beyond the source's map hold no whole memory block of %d MiB: the server resumes with the source's RAM", mib(total), mib(block)))
		return
	}
	if aliases == nil || !aliases.FromPack(HotAddModule) {
		p.UnusedRAM = h.Bytes
		p.Notes = append(p.Notes, fmt.Sprintf("the server resumes with the source's %d MiB of this machine's %d MiB: a driver pack for %s (thaw driverpack build) would add %d MiB (%s)",
			mib(p.SourceRAM), mib(p.TargetRAM), releaseOf(aliases), mib(h.Bytes), HotAddModule))
		return
	}
	// A source PCI root window reaching into the added RAM starts above
	// everything this machine's map uses there.
	for _, w := range src.PCIWindows {
		touches := false
		for _, r := range h.Ranges {
			touches = touches || (r.Start < w.End && w.Start < r.End)
		}
		if !touches {
			continue
		}
		to := w.Start
		for _, e := range dst.E820 {
			if e.Start < w.End && w.Start < e.End {
				to = max(to, (e.End+(1<<20)-1)>>20<<20)
			}
		}
		if to >= w.End {
			p.Notes = append(p.Notes, fmt.Sprintf("this machine's extra RAM stays unused: it covers the source's whole PCI window %#x-%#x", w.Start, w.End-1))
			return
		}
		h.Windows = append(h.Windows, WindowMove{From: w.Start, To: to})
	}
	p.HotAdd = h
	lost := total - h.Bytes
	note := fmt.Sprintf("adds %d MiB of this machine's RAM to the resumed kernel (%s, whole blocks of %d MiB", mib(h.Bytes), HotAddModule, mib(block))
	if lost >= 1<<20 {
		note += fmt.Sprintf("; %d MiB in partial blocks stay unused", mib(lost))
	}
	note += ")"
	for _, w := range h.Windows {
		note += fmt.Sprintf("; the source's PCI window at %#x moves up to %#x first", w.From, w.To)
	}
	p.Notes = append(p.Notes, note)
}

// cpus plans the CPUs the resumed kernel runs on here, and notes how many
// and why. Its possible CPUs were fixed when it booted on the source; those
// beyond the source's online ones that are present here are hot-added by
// the pack's thaw_hotadd (ACPI) and brought online by the capture process.
func (p *Plan) cpus(src, dst *manifest.Manifest, aliases *Aliases) {
	have, possible, was := dst.CPU.Count, src.CPU.Possible, src.CPU.Count
	if have == 0 || possible == 0 || was == 0 || have <= was {
		return
	}
	reach := min(possible, have)
	limit := ""
	if possible < have {
		limit = fmt.Sprintf("the image kernel's possible CPUs (%d) were fixed when it booted on the source", possible)
		if strings.HasPrefix(src.Kernel.Release, "6.1.") || strings.HasPrefix(src.Kernel.Release, "6.1-") {
			limit += fmt.Sprintf("; on the source, thaw prepare --cpus %d leaves room from its next boot (possible_cpus=)", have)
		} else {
			limit += "; only CPUs the source's firmware listed as present but disabled (QEMU -smp N,maxcpus=M) can come online, and the kernel counts those only when the MADT marks them online-capable or when it runs under a hypervisor it recognises (KVM, VMware, Hyper-V, Xen; not QEMU's TCG)"
		}
	}
	switch {
	case reach <= was:
		p.Notes = append(p.Notes, fmt.Sprintf("resumes with %d of this machine's %d CPUs: %s", was, have, limit))
	case aliases == nil || !aliases.FromPack(HotAddModule):
		p.UnusedCPUs = reach - was
		p.Notes = append(p.Notes, fmt.Sprintf("resumes with %d of this machine's %d CPUs: a driver pack for %s (thaw driverpack build) would bring %d more online (%s)%s",
			was, have, releaseOf(aliases), reach-was, HotAddModule, prefixed("; ", limit)))
	default:
		if p.HotAdd == nil {
			p.HotAdd = &HotAdd{Module: HotAddModule, Block: src.MemoryBlock}
		}
		p.HotAdd.CPUs = reach - was
		p.Notes = append(p.Notes, fmt.Sprintf("resumes with %d of this machine's %d CPUs: %s hot-adds %d through ACPI, which the capture process brings online%s",
			reach, have, HotAddModule, reach-was, prefixed("; ", limit)))
	}
}

// prefixed is s after sep, or "" when s is.
func prefixed(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}
