package physmem

import (
	"fmt"

	"github.com/thawlinux/thaw/images/manifest"
)

// The window Ranges looks at: above the legacy first MiB (BIOS data, option
// ROMs: the target's own), below 4 GiB, where firmware puts its tables.
const (
	windowStart = 1 << 20
	windowEnd   = 1 << 32
)

// Ranges picks the non-RAM ranges (type != 1) of the firmware map m that lie
// between 1 MiB and 4 GiB, clipped to that window, in m's order. They carry
// the firmware's ACPI tables: type 2 (Reserved) under SeaBIOS, 3 (ACPI
// Tables) and 4 (ACPI NVS) on real firmware. Reserved ranges also cover
// device windows (a q35 machine's 256 MiB MMCONFIG, the BIOS ROM), so the
// total is capped: more than maxTotal bytes (0: no cap) is an error naming the
// total.
func Ranges(m []manifest.E820Entry, maxTotal uint64) ([]manifest.E820Entry, error) {
	var out []manifest.E820Entry
	var total uint64
	for i, e := range m {
		if e.End <= e.Start {
			return nil, fmt.Errorf("physmem: e820[%d]: end %#x not above start %#x", i, e.End, e.Start)
		}
		if e.Type == 1 {
			continue
		}
		start, end := max(e.Start, windowStart), min(e.End, windowEnd)
		if start >= end {
			continue
		}
		out = append(out, manifest.E820Entry{Start: start, End: end, Type: e.Type, Name: e.Name})
		total += end - start
	}
	if maxTotal != 0 && total > maxTotal {
		return nil, fmt.Errorf("physmem: the non-RAM ranges between 1 MiB and 4 GiB total %#x bytes (%d MiB), more than the %#x allowed", total, total>>20, maxTotal)
	}
	return out, nil
}
