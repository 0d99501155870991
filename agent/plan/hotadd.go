package plan

import (
	"fmt"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// HotAddModule is the driver pack's module that adds this machine's extra
// RAM to the resumed kernel (boot/packbuild/hotadd/thaw_hotadd.c).
const HotAddModule = "thaw_hotadd"

// HotAdd is the RAM of this machine that the source's memory map lacked,
// which the resumed kernel is given: whole memory blocks, added by the
// pack's thaw_hotadd before the PCI rescan, then onlined by the capture
// process.
type HotAdd struct {
	Module string               `json:"module"`
	Ranges []manifest.PhysRange `json:"ranges"` // whole blocks, [Start, End)
	Block  uint64               `json:"block"`  // the resumed kernel's memory block size
	Bytes  uint64               `json:"bytes"`
	// WindowFloor: the source's PCI root windows that begin below it
	// (in what is RAM here) are moved up to start there first.
	WindowFloor uint64 `json:"window_floor,omitempty"`
	Params      string `json:"params"`
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
		for _, e := range dst.E820 {
			if e.Start < w.End && w.Start < e.End {
				h.WindowFloor = max(h.WindowFloor, (e.End+(1<<20)-1)>>20<<20)
			}
		}
	}
	var rs []string
	for _, r := range h.Ranges {
		rs = append(rs, fmt.Sprintf("%x-%x", r.Start, r.End))
	}
	h.Params = "ranges=" + strings.Join(rs, ",")
	if h.WindowFloor != 0 {
		h.Params += fmt.Sprintf(" window_floor=%#x", h.WindowFloor)
	}
	files, err := aliases.LoadOrder(HotAddModule)
	if err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("this machine's extra RAM stays unused: %v", err))
		return
	}
	p.HotAdd = h
	p.Modules = append(files, p.Modules...)
	lost := total - h.Bytes
	note := fmt.Sprintf("adds %d MiB of this machine's RAM to the resumed kernel (%s, whole blocks of %d MiB", mib(h.Bytes), HotAddModule, mib(block))
	if lost >= 1<<20 {
		note += fmt.Sprintf("; %d MiB in partial blocks stay unused", mib(lost))
	}
	note += ")"
	if h.WindowFloor != 0 {
		note += fmt.Sprintf("; the source's PCI window moves up to %#x first", h.WindowFloor)
	}
	p.Notes = append(p.Notes, note)
}

// cpus notes how many of this machine's CPUs the resumed kernel will run
// on: its possible CPUs were fixed when it booted on the source.
func (p *Plan) cpus(src, dst *manifest.Manifest) {
	have, possible := dst.CPU.Count, src.CPU.Possible
	if have == 0 || possible == 0 || possible >= have {
		return
	}
	why := fmt.Sprintf("the image kernel's possible CPUs (%d) were fixed when it booted on the source", possible)
	if strings.HasPrefix(src.Kernel.Release, "6.1.") || strings.HasPrefix(src.Kernel.Release, "6.1-") {
		why += fmt.Sprintf("; on the source, thaw prepare --cpus %d leaves room from its next boot (possible_cpus=)", have)
	} else {
		why += "; only CPUs the source's firmware listed as present but disabled (QEMU -smp N,maxcpus=M) can come online"
	}
	p.Notes = append(p.Notes, fmt.Sprintf("resumes with %d of this machine's %d CPUs: %s", min(possible, have), have, why))
}
