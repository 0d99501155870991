package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// IomemEntry is one line of /proc/iomem: a physical range [Start, End]
// (End inclusive, as the kernel prints it), its name and its depth in the
// resource tree (two spaces of indentation per level).
type IomemEntry struct {
	Start, End uint64
	Name       string
	Depth      int
}

// ParseIomem reads /proc/iomem. Errors name the line.
func ParseIomem(r io.Reader) ([]IomemEntry, error) {
	var out []IomemEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent%2 != 0 {
			return nil, fmt.Errorf("iomem line %d: odd indentation %d", n, indent)
		}
		rng, name, ok := strings.Cut(line[indent:], " : ")
		if !ok {
			return nil, fmt.Errorf("iomem line %d: no \" : \" between range and name: %q", n, line)
		}
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			return nil, fmt.Errorf("iomem line %d: range %q is not START-END", n, rng)
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("iomem line %d: range %q is not hexadecimal START-END with START <= END", n, rng)
		}
		e := IomemEntry{Start: start, End: end, Name: name, Depth: indent / 2}
		if len(out) == 0 && e.Depth != 0 || len(out) > 0 && e.Depth > out[len(out)-1].Depth+1 {
			return nil, fmt.Errorf("iomem line %d: depth %d without a parent", n, e.Depth)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("iomem: %w", err)
	}
	return out, nil
}

// PCIWindows are the root buses' memory windows: the top-level "PCI Bus"
// entries, as [Start, End) ranges. The resumed kernel places new devices'
// BARs inside these. Without the privilege to see addresses (every range
// printed as zero) there are none.
func PCIWindows(es []IomemEntry) []manifest.PhysRange {
	var out []manifest.PhysRange
	for _, e := range es {
		if e.Depth == 0 && strings.HasPrefix(e.Name, "PCI Bus ") && e.End > 0 {
			out = append(out, manifest.PhysRange{Start: e.Start, End: e.End + 1})
		}
	}
	return out
}

// Covered reports whether [start, end) is wholly covered by entries whose
// name is prefix or starts with prefix and a colon, at any depth (ramoops
// names its zones "ramoops:dmesg(0/511)").
func Covered(es []IomemEntry, start, end uint64, prefix string) bool {
	at := start
	for at < end {
		moved := false
		for _, e := range es {
			if (e.Name == prefix || strings.HasPrefix(e.Name, prefix+":")) && e.Start <= at && e.End >= at {
				at = e.End + 1
				moved = true
				if at == 0 { // wrapped past the top
					return true
				}
				break
			}
		}
		if !moved {
			return false
		}
	}
	return true
}

// iomem records the PCI windows of /proc/iomem.
func (p *prober) iomem(m *manifest.Manifest) error {
	path, b, err := p.readOptional("proc/iomem")
	if err != nil || b == nil {
		return err
	}
	m.Pstore = attr(p.path("sys/module/pstore/parameters/backend"))
	if m.Pstore == "(null)" {
		m.Pstore = ""
	}
	es, err := ParseIomem(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m.PCIWindows = PCIWindows(es)
	return nil
}
