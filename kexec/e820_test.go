package kexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

func TestIntersect(t *testing.T) {
	got := intersect(ramOf(seabios512), ramOf(seabios(0x1ffd7000)))
	want := []span{{0, 0x9fc00}, {0x100000, 0x1ffd7000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("intersect = %#v, want %#v", got, want)
	}
	if got := pageInward(want); !reflect.DeepEqual(got, []span{{0, 0x9f000}, {0x100000, 0x1ffd7000}}) {
		t.Errorf("pageInward = %#v", got)
	}
}

// writeMemmap lays table out as /sys/firmware/memmap in a new directory.
func writeMemmap(t *testing.T, table []manifest.E820Entry) string {
	t.Helper()
	dir := t.TempDir()
	for i, e := range table {
		d := filepath.Join(dir, fmt.Sprint(i))
		name := e.Name
		if name == "" {
			name = TypeName(e.Type)
		}
		for f, v := range map[string]string{
			"start": fmt.Sprintf("%#x\n", e.Start),
			"end":   fmt.Sprintf("%#x\n", e.End-1),
			"type":  name + "\n",
		} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func readTestMemmap(t *testing.T, name string) []manifest.E820Entry {
	t.Helper()
	m, err := ReadMemmap(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReadMemmap(t *testing.T) {
	got := readTestMemmap(t, "memmap-cloudvm")
	want := []manifest.E820Entry{
		{Start: 0x0, End: 0x9fc00, Type: 1, Name: "System RAM"},
		{Start: 0x9fc00, End: 0x100000, Type: 2, Name: "Reserved"},
		{Start: 0x100000, End: 0xc0000000, Type: 1, Name: "System RAM"},
		{Start: 0xeec00000, End: 0xfec00000, Type: 2, Name: "Reserved"},
		{Start: 0x100000000, End: 0x640000000, Type: 1, Name: "System RAM"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadMemmap(memmap-cloudvm):\n got %#v\nwant %#v", got, want)
	}

	// Twelve entries: directory 10 sorts after 9 by address, not by name;
	// a type the kernel does not name is kept as type 0.
	var table []manifest.E820Entry
	for i := uint64(0); i < 12; i++ {
		table = append(table, manifest.E820Entry{Start: i << 20, End: (i + 1) << 20, Type: 1 + uint32(i%2), Name: TypeName(1 + uint32(i%2))})
	}
	table[11].Type, table[11].Name = 0, "Something New"
	if got, err := ReadMemmap(writeMemmap(t, table)); err != nil || !reflect.DeepEqual(got, table) {
		t.Errorf("ReadMemmap(12 entries) = %v, %v", got, err)
	}

	if _, err := ReadMemmap(t.TempDir()); err == nil {
		t.Error("ReadMemmap of an empty directory: no error")
	}
	bad := writeMemmap(t, seabios256)
	if err := os.WriteFile(filepath.Join(bad, "3", "end"), []byte("0xzz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMemmap(bad); err == nil || !strings.Contains(err.Error(), filepath.Join(bad, "3")) {
		t.Errorf("ReadMemmap with a bad end: err %v, want one naming entry 3", err)
	}
}
