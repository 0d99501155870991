package memmap

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// seabios is the firmware map of a QEMU pc guest under SeaBIOS whose RAM
// ends at top (exclusive): top moves with the RAM size and the disk
// controller (virtio-blk 512 MiB: 0x1ffdd000; AHCI 0x1ffdf000; NVMe
// 0x1ffd7000).
func seabios(top uint64) []manifest.E820Entry {
	hi := (top + 0xfffff) &^ 0xfffff
	return []manifest.E820Entry{
		{Start: 0x0, End: 0x9fc00, Type: 1, Name: "System RAM"},
		{Start: 0x9fc00, End: 0xa0000, Type: 2, Name: "Reserved"},
		{Start: 0xf0000, End: 0x100000, Type: 2, Name: "Reserved"},
		{Start: 0x100000, End: top, Type: 1, Name: "System RAM"},
		{Start: top, End: hi, Type: 2, Name: "Reserved"},
		{Start: 0xfeffc000, End: 0xff000000, Type: 2, Name: "Reserved"},
		{Start: 0xfffc0000, End: 0x100000000, Type: 2, Name: "Reserved"},
	}
}

var (
	seabios224 = seabios(0x0dfdd000)
	seabios256 = seabios(0x0ffdd000)
	seabios384 = seabios(0x17fdd000)
	seabios512 = seabios(0x1ffdd000)
)

func TestRAM(t *testing.T) {
	tests := []struct {
		name string
		m    []manifest.E820Entry
		want []Span
	}{
		{name: "SeaBIOS", m: seabios512, want: []Span{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x1ffdd000}}},
		{
			name: "touching entries merge",
			m: []manifest.E820Entry{
				{Start: 0x100000, End: 0x10000000, Type: 1},
				{Start: 0x10000000, End: 0x80000000, Type: 1},
			},
			want: []Span{{Start: 0x100000, End: 0x80000000}},
		},
		{
			name: "overlapping and unsorted entries merge",
			m: []manifest.E820Entry{
				{Start: 0x20000000, End: 0x40000000, Type: 1},
				{Start: 0x100000, End: 0x30000000, Type: 1},
				{Start: 0x200000, End: 0x300000, Type: 1},
			},
			want: []Span{{Start: 0x100000, End: 0x40000000}},
		},
		{
			name: "other types and empty ranges are left out",
			m: []manifest.E820Entry{
				{Start: 0x0, End: 0x1000, Type: 3},
				{Start: 0x1000, End: 0x1000, Type: 1},
				{Start: 0x2000, End: 0x3000, Type: 0, Name: "Something New"},
				{Start: 0x3000, End: 0x4000, Type: 1},
			},
			want: []Span{{Start: 0x3000, End: 0x4000}},
		},
		{name: "no map", m: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RAM(tt.m); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RAM = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	split := RAM([]manifest.E820Entry{
		{Start: 0x100000, End: 0x10000000, Type: 1},
		{Start: 0x10000000, End: 0x10100000, Type: 2},
		{Start: 0x10100000, End: 0x80000000, Type: 1},
	})
	tests := []struct {
		name       string
		ram        []Span
		start, end uint64
		gap        *Span // the first part not covered; nil: covered
	}{
		{name: "inside one range", ram: split, start: 0x200000, end: 0x300000},
		{name: "whole range", ram: split, start: 0x100000, end: 0x10000000},
		{name: "across the hole", ram: split, start: 0x100000, end: 0x20000000, gap: &Span{Start: 0x10000000, End: 0x10100000}},
		{name: "below the RAM", ram: split, start: 0x0, end: 0x200000, gap: &Span{Start: 0x0, End: 0x100000}},
		{name: "above the RAM", ram: split, start: 0x70000000, end: 0x90000000, gap: &Span{Start: 0x80000000, End: 0x90000000}},
		{name: "no RAM", ram: nil, start: 0x1000, end: 0x2000, gap: &Span{Start: 0x1000, End: 0x2000}},
		{name: "empty range", ram: nil, start: 0x1000, end: 0x1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Covers(tt.ram, tt.start, tt.end); got != (tt.gap == nil) {
				t.Errorf("Covers = %v, want %v", got, tt.gap == nil)
			}
			if tt.gap == nil || tt.end <= tt.start {
				return
			}
			if gap, ok := Uncovered(tt.ram, tt.start, tt.end); !ok || gap != *tt.gap {
				t.Errorf("Uncovered = %#v, %v; want %#v", gap, ok, *tt.gap)
			}
		})
	}
}

func TestCheckFits(t *testing.T) {
	tests := []struct {
		name     string
		src, dst []manifest.E820Entry
		// the refused source range and its first part not RAM on dst
		want *FitError
	}{
		{name: "same map", src: seabios512, dst: seabios512},
		{name: "bigger target", src: seabios256, dst: seabios512},
		{name: "224 MiB source on 384 MiB target", src: seabios224, dst: seabios384},
		{name: "bigger real machine", src: seabios512, dst: readTestMemmap(t, "memmap-cloudvm")},
		{
			name: "smaller target",
			src:  seabios512, dst: seabios256,
			want: &FitError{Range: seabios512[3], Start: 0x0ffdd000, End: 0x1ffdd000},
		},
		{
			name: "same RAM, AHCI target ends higher",
			src:  seabios(0x1ffdd000), dst: seabios(0x1ffdf000),
		},
		{
			name: "same RAM, NVMe target ends lower",
			src:  seabios(0x1ffdd000), dst: seabios(0x1ffd7000),
			want: &FitError{Range: seabios512[3], Start: 0x1ffd7000, End: 0x1ffdd000},
		},
		{
			name: "target RAM split in touching entries",
			src:  []manifest.E820Entry{{Start: 0x100000, End: 0x40000000, Type: 1}},
			dst: []manifest.E820Entry{
				{Start: 0x100000, End: 0x10000000, Type: 1},
				{Start: 0x10000000, End: 0x80000000, Type: 1},
			},
		},
		{
			name: "target has a hole inside the source's RAM",
			src:  []manifest.E820Entry{{Start: 0x100000, End: 0x40000000, Type: 1}},
			dst: []manifest.E820Entry{
				{Start: 0x100000, End: 0x10000000, Type: 1},
				{Start: 0x10000000, End: 0x10100000, Type: 2},
				{Start: 0x10100000, End: 0x80000000, Type: 1},
			},
			want: &FitError{Range: manifest.E820Entry{Start: 0x100000, End: 0x40000000, Type: 1}, Start: 0x10000000, End: 0x10100000},
		},
		{
			name: "source hole over target RAM is fine",
			src: []manifest.E820Entry{
				{Start: 0x100000, End: 0x10000000, Type: 1},
				{Start: 0x10000000, End: 0x10100000, Type: 2},
				{Start: 0x10100000, End: 0x20000000, Type: 1},
			},
			dst: []manifest.E820Entry{{Start: 0, End: 0x80000000, Type: 1}},
		},
		{
			name: "source RAM where the target has nothing",
			src:  []manifest.E820Entry{{Start: 0x100000000, End: 0x140000000, Type: 1}},
			dst:  seabios512,
			want: &FitError{Range: manifest.E820Entry{Start: 0x100000000, End: 0x140000000, Type: 1}, Start: 0x100000000, End: 0x140000000},
		},
		{
			name: "the first range that does not fit is named",
			src: []manifest.E820Entry{
				{Start: 0x0, End: 0xa0000, Type: 1},
				{Start: 0x100000, End: 0x30000000, Type: 1},
			},
			dst:  seabios512,
			want: &FitError{Range: manifest.E820Entry{Start: 0x0, End: 0xa0000, Type: 1}, Start: 0x9fc00, End: 0xa0000},
		},
		{
			name: "RAM typed otherwise on the target",
			src:  []manifest.E820Entry{{Start: 0x100000, End: 0x200000, Type: 1}},
			dst:  []manifest.E820Entry{{Start: 0x100000, End: 0x200000, Type: 3}},
			want: &FitError{Range: manifest.E820Entry{Start: 0x100000, End: 0x200000, Type: 1}, Start: 0x100000, End: 0x200000},
		},
		{name: "empty source", src: nil, dst: seabios256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFits(tt.src, tt.dst)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckFits: %v", err)
				}
				return
			}
			var fe *FitError
			if !errors.As(err, &fe) {
				t.Fatalf("CheckFits: %v, want a *FitError", err)
			}
			if *fe != *tt.want {
				t.Errorf("CheckFits: %+v, want %+v", *fe, *tt.want)
			}
			for _, a := range []uint64{tt.want.Range.Start, tt.want.Start} {
				if !strings.Contains(err.Error(), fmt.Sprintf("%#x", a)) {
					t.Errorf("error %q does not name %#x", err, a)
				}
			}
		})
	}
}
