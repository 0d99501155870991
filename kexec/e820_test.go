package kexec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
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

// CheckFits applies images/memmap's rule (tested there) and keeps the
// package's prefix on the refusal.
func TestCheckFits(t *testing.T) {
	tests := []struct {
		name     string
		src, dst []manifest.E820Entry
		want     *FitError
		say      string // the whole error
	}{
		{name: "bigger target", src: seabios256, dst: seabios512},
		{
			name: "target RAM split in touching entries",
			src:  []manifest.E820Entry{{Start: 0x100000, End: 0x40000000, Type: 1}},
			dst: []manifest.E820Entry{
				{Start: 0x100000, End: 0x10000000, Type: 1},
				{Start: 0x10000000, End: 0x80000000, Type: 1},
			},
		},
		{
			name: "smaller target",
			src:  seabios512, dst: seabios256,
			want: &FitError{Range: seabios512[3], Start: 0x0ffdd000, End: 0x1ffdd000},
			say:  "kexec: source RAM [0x100000-0x1ffdcfff]: [0xffdd000-0x1ffdcfff] is not RAM on the target",
		},
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
			if !errors.As(err, &fe) || *fe != *tt.want {
				t.Fatalf("CheckFits: %v, want %+v", err, *tt.want)
			}
			if err.Error() != tt.say {
				t.Errorf("CheckFits: %q, want %q", err, tt.say)
			}
		})
	}
}

func TestIntersect(t *testing.T) {
	got := intersect(memmap.RAM(seabios512), memmap.RAM(seabios(0x1ffd7000)))
	want := []memmap.Span{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x1ffd7000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("intersect = %#v, want %#v", got, want)
	}
	if got := pageInward(want); !reflect.DeepEqual(got, []memmap.Span{{Start: 0, End: 0x9f000}, {Start: 0x100000, End: 0x1ffd7000}}) {
		t.Errorf("pageInward = %#v", got)
	}
}

// writeMemmap lays table out as /sys/firmware/memmap in a new directory.
func writeMemmap(t *testing.T, table []manifest.E820Entry) string {
	t.Helper()
	dir := t.TempDir()
	if err := memmap.Write(dir, table); err != nil {
		t.Fatal(err)
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

// ReadMemmap reads with images/memmap's reader (tested there), sorts by
// address and refuses a map without ranges.
func TestReadMemmap(t *testing.T) {
	cloud := []manifest.E820Entry{
		{Start: 0x0, End: 0x9fc00, Type: 1, Name: "System RAM"},
		{Start: 0x9fc00, End: 0x100000, Type: 2, Name: "Reserved"},
		{Start: 0x100000, End: 0xc0000000, Type: 1, Name: "System RAM"},
		{Start: 0xeec00000, End: 0xfec00000, Type: 2, Name: "Reserved"},
		{Start: 0x100000000, End: 0x640000000, Type: 1, Name: "System RAM"},
	}
	// Numbered against the address order: the result is by address.
	reversed := make([]manifest.E820Entry, len(cloud))
	for i, e := range cloud {
		reversed[len(cloud)-1-i] = e
	}
	tests := []struct {
		name string
		dir  func(t *testing.T) string
		want []manifest.E820Entry
		err  string // a part of the error, with the directory for "DIR"
	}{
		{name: "cloud VM", dir: func(*testing.T) string { return filepath.Join("testdata", "memmap-cloudvm") }, want: cloud},
		{name: "sorted by address", dir: func(t *testing.T) string { return writeMemmap(t, reversed) }, want: cloud},
		{name: "no ranges", dir: func(t *testing.T) string { return t.TempDir() }, err: "kexec: memory map DIR: no ranges"},
		{
			name: "bad end",
			dir: func(t *testing.T) string {
				dir := writeMemmap(t, seabios256)
				if err := os.WriteFile(filepath.Join(dir, "3", "end"), []byte("0xzz\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			err: "kexec: memory map: " + filepath.Join("DIR", "3", "end"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			got, err := ReadMemmap(dir)
			if tt.err != "" {
				want := strings.ReplaceAll(tt.err, "DIR", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("ReadMemmap: %v, %v; want an error with %q", got, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadMemmap: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ReadMemmap:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}
