package capture

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

func TestSlotSpans(t *testing.T) {
	// An LVM swap of two segments: device bytes 0..8 pages at disk byte
	// 1 MiB, 8..16 pages at 10 MiB.
	r := &manifest.Resume{Segments: []manifest.Segment{{Start: 0, Length: 8 * 4096, DiskOffset: 1 << 20}, {Start: 8 * 4096, Length: 8 * 4096, DiskOffset: 10 << 20}}}
	for _, tc := range []struct {
		name string
		ext  []manifest.Extent
		want []span
	}{
		{"one segment", []manifest.Extent{{Start: 2, Count: 3}}, []span{{1<<20 + 2*4096, 1<<20 + 5*4096}}},
		{"across both", []manifest.Extent{{Start: 6, Count: 4}}, []span{{1<<20 + 6*4096, 1<<20 + 8*4096}, {10 << 20, 10<<20 + 2*4096}}},
		{"merged, sorted", []manifest.Extent{{Start: 12, Count: 1}, {Start: 3, Count: 1}, {Start: 1, Count: 2}}, []span{{1<<20 + 4096, 1<<20 + 4*4096}, {10<<20 + 4*4096, 10<<20 + 5*4096}}},
		{"past the swap", []manifest.Extent{{Start: 15, Count: 10}}, []span{{10<<20 + 7*4096, 10<<20 + 8*4096}}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := slotSpans(r, tc.ext)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestZeroHoles(t *testing.T) {
	holes := []span{{10, 20}, {30, 35}, {100, 200}}
	for _, tc := range []struct {
		at   int64
		n    int
		zero []int // offsets in the buffer that must be zero
	}{
		{0, 50, []int{10, 19, 30, 34}},
		{15, 10, []int{0, 4}},
		{150, 20, []int{0, 19}},
		{40, 50, nil},
	} {
		buf := bytes.Repeat([]byte{0xff}, tc.n)
		zeroHoles(buf, tc.at, holes)
		for i, b := range buf {
			in := false
			for _, h := range holes {
				if tc.at+int64(i) >= h.off && tc.at+int64(i) < h.end {
					in = true
				}
			}
			if (b == 0) != in {
				t.Fatalf("at %d: byte %d is %#x", tc.at, i, b)
			}
		}
		for _, z := range tc.zero {
			if buf[z] != 0 {
				t.Errorf("at %d: byte %d not zeroed", tc.at, z)
			}
		}
	}
}
