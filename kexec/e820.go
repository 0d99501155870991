package kexec

import (
	"errors"
	"fmt"
	"sort"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
)

// E820 types (arch/x86/include/asm/e820/types.h).
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
	E820NVS      = 4
	E820Unusable = 5
)

// TypeName is the name the kernel gives e820 type t, or "" if it has none.
func TypeName(t uint32) string { return manifest.E820TypeName(t) }

// FitError is the refusal of a source map whose RAM the target lacks: the
// source's RAM range Range has [Start, End) outside the target's RAM.
type FitError = memmap.FitError

// ErrTooManyEntries refuses a map that does not fit into boot_params.
var ErrTooManyEntries = errors.New("kexec: more e820 entries than boot_params holds")

// CheckFits reports whether every RAM range of src lies in RAM of dst, by
// the rule of images/memmap: RAM ranges of dst that touch count as one. The
// error wraps a *FitError naming the first source range, in src's order,
// that does not fit.
func CheckFits(src, dst []manifest.E820Entry) error {
	if err := memmap.CheckFits(src, dst); err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	return nil
}

// intersect returns the ranges common to the sorted, merged a and b.
func intersect(a, b []memmap.Span) []memmap.Span {
	var out []memmap.Span
	for i, j := 0, 0; i < len(a) && j < len(b); {
		s, t := max(a[i].Start, b[j].Start), min(a[i].End, b[j].End)
		if s < t {
			out = append(out, memmap.Span{Start: s, End: t})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return out
}

// inside reports whether [start, end) lies within one of the merged rs.
func inside(rs []memmap.Span, start, end uint64) bool {
	for _, r := range rs {
		if r.Start <= start && end <= r.End {
			return true
		}
	}
	return false
}

const pageSize = 4096

func alignUp(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

// pageInward shrinks each range to the whole pages inside it.
func pageInward(rs []memmap.Span) []memmap.Span {
	var out []memmap.Span
	for _, r := range rs {
		s, t := alignUp(r.Start), r.End&^(pageSize-1)
		if s < t {
			out = append(out, memmap.Span{Start: s, End: t})
		}
	}
	return out
}

// ReadMemmap reads a firmware memory map laid out as /sys/firmware/memmap
// (images/memmap's reader), sorted by start, End exclusive. A type name the
// kernel does not define gives Type 0 and keeps the name: it is not RAM.
func ReadMemmap(dir string) ([]manifest.E820Entry, error) {
	m, err := memmap.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("kexec: memory map: %w", err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("kexec: memory map %s: no ranges", dir)
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Start < m[j].Start })
	return m, nil
}
