package memmap

import (
	"fmt"
	"sort"

	"github.com/thawlinux/thaw/images/manifest"
)

// typeRAM is the e820 type of usable RAM ("System RAM").
const typeRAM = 1

// Span is a half-open physical range [Start, End).
type Span struct{ Start, End uint64 }

// RAM returns the RAM ranges of m sorted by start, with touching or
// overlapping ranges merged into one. Empty ranges are dropped.
func RAM(m []manifest.E820Entry) []Span {
	var rs []Span
	for _, e := range m {
		if e.Type == typeRAM && e.End > e.Start {
			rs = append(rs, Span{e.Start, e.End})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var out []Span
	for _, r := range rs {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Uncovered returns the first part of [start, end) outside ram, sorted and
// merged as [RAM] returns it; ok is false when ram covers it all.
func Uncovered(ram []Span, start, end uint64) (gap Span, ok bool) {
	at := start
	for _, r := range ram {
		if r.End <= at {
			continue
		}
		if r.Start > at {
			return Span{at, min(r.Start, end)}, true
		}
		at = r.End
		if at >= end {
			return Span{}, false
		}
	}
	return Span{at, end}, true
}

// Covers reports whether ram, as [RAM] returns it, covers [start, end). An
// empty range is covered.
func Covers(ram []Span, start, end uint64) bool {
	if end <= start {
		return true
	}
	_, ok := Uncovered(ram, start, end)
	return !ok
}

// FitError is the refusal of a source map whose RAM the target lacks: the
// source's RAM range Range has [Start, End) outside the target's RAM.
type FitError struct {
	Range      manifest.E820Entry // the source's RAM range
	Start, End uint64             // its first part that is not RAM on the target
}

func (e *FitError) Error() string {
	return fmt.Sprintf("source RAM [%#x-%#x]: [%#x-%#x] is not RAM on the target",
		e.Range.Start, e.Range.End-1, e.Start, e.End-1)
}

// CheckFits reports whether every RAM range of src lies in RAM of dst. RAM
// ranges of dst that touch or overlap count as one; the error is a
// *FitError naming the first source range, in src's order, that does not
// fit.
func CheckFits(src, dst []manifest.E820Entry) error {
	ram := RAM(dst)
	for _, e := range src {
		if e.Type != typeRAM || e.End <= e.Start {
			continue
		}
		if gap, ok := Uncovered(ram, e.Start, e.End); ok {
			return &FitError{Range: e, Start: gap.Start, End: gap.End}
		}
	}
	return nil
}
