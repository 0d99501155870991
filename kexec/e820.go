package kexec

import (
	"errors"
	"fmt"
	"sort"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/manifest"
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
type FitError struct {
	Range      manifest.E820Entry // the source's RAM range
	Start, End uint64             // its first part that is not RAM on the target
}

func (e *FitError) Error() string {
	return fmt.Sprintf("kexec: source RAM [%#x-%#x]: [%#x-%#x] is not RAM on the target",
		e.Range.Start, e.Range.End-1, e.Start, e.End-1)
}

// ErrTooManyEntries refuses a map that does not fit into boot_params.
var ErrTooManyEntries = errors.New("kexec: more e820 entries than boot_params holds")

// CheckFits reports whether every RAM range of src lies in RAM of dst. RAM
// ranges of dst that touch count as one; the error is a *FitError naming
// the first source range, in src's order, that does not fit.
func CheckFits(src, dst []manifest.E820Entry) error {
	ram := ramOf(dst)
	for _, e := range src {
		if e.Type != E820RAM || e.End <= e.Start {
			continue
		}
		if s, t, ok := uncovered(ram, e.Start, e.End); ok {
			return &FitError{Range: e, Start: s, End: t}
		}
	}
	return nil
}

// span is a half-open physical range [start, end).
type span struct{ start, end uint64 }

// ramOf returns the RAM ranges of m sorted, with touching or overlapping
// ranges merged.
func ramOf(m []manifest.E820Entry) []span {
	var rs []span
	for _, e := range m {
		if e.Type == E820RAM && e.End > e.Start {
			rs = append(rs, span{e.Start, e.End})
		}
	}
	return merge(rs)
}

func merge(rs []span) []span {
	sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	var out []span
	for _, r := range rs {
		if n := len(out); n > 0 && r.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out
}

// uncovered returns the first part of [start, end) outside the sorted,
// merged ranges rs; ok is false when rs cover it all.
func uncovered(rs []span, start, end uint64) (s, t uint64, ok bool) {
	at := start
	for _, r := range rs {
		if r.end <= at {
			continue
		}
		if r.start > at {
			return at, min(r.start, end), true
		}
		at = r.end
		if at >= end {
			return 0, 0, false
		}
	}
	return at, end, true
}

// intersect returns the ranges common to the sorted, merged a and b.
func intersect(a, b []span) []span {
	var out []span
	for i, j := 0, 0; i < len(a) && j < len(b); {
		s, t := max(a[i].start, b[j].start), min(a[i].end, b[j].end)
		if s < t {
			out = append(out, span{s, t})
		}
		if a[i].end < b[j].end {
			i++
		} else {
			j++
		}
	}
	return out
}

// inside reports whether [start, end) lies within one of the merged rs.
func inside(rs []span, start, end uint64) bool {
	for _, r := range rs {
		if r.start <= start && end <= r.end {
			return true
		}
	}
	return false
}

const pageSize = 4096

func alignUp(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

// pageInward shrinks each range to the whole pages inside it.
func pageInward(rs []span) []span {
	var out []span
	for _, r := range rs {
		s, t := alignUp(r.start), r.end&^(pageSize-1)
		if s < t {
			out = append(out, span{s, t})
		}
	}
	return out
}

// ReadMemmap reads a firmware memory map laid out as /sys/firmware/memmap
// (agent/probe's reader), sorted by start, End exclusive. A type name the
// kernel does not define gives Type 0 and keeps the name: it is not RAM.
func ReadMemmap(dir string) ([]manifest.E820Entry, error) {
	m, err := probe.ReadMemmap(dir)
	if err != nil {
		return nil, fmt.Errorf("kexec: memory map: %w", err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("kexec: memory map %s: no ranges", dir)
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Start < m[j].Start })
	return m, nil
}
