package physmem

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// seabios512 is the firmware map of a 512 MiB QEMU pc guest under SeaBIOS
// with one virtio-blk disk (End exclusive).
var seabios512 = []manifest.E820Entry{
	{Start: 0x0, End: 0x9fc00, Type: 1, Name: "System RAM"},
	{Start: 0x9fc00, End: 0xa0000, Type: 2, Name: "Reserved"},
	{Start: 0xf0000, End: 0x100000, Type: 2, Name: "Reserved"},
	{Start: 0x100000, End: 0x1ffdd000, Type: 1, Name: "System RAM"},
	{Start: 0x1ffdd000, End: 0x20000000, Type: 2, Name: "Reserved"},
	{Start: 0xfeffc000, End: 0xff000000, Type: 2, Name: "Reserved"},
	{Start: 0xfffc0000, End: 0x100000000, Type: 2, Name: "Reserved"},
}

func TestRanges(t *testing.T) {
	tests := []struct {
		name    string
		m       []manifest.E820Entry
		max     uint64
		want    []manifest.E820Entry
		wantErr string
	}{
		{
			name: "seabios: tables at the top of low RAM, KVM pages, BIOS",
			m:    seabios512,
			max:  1 << 20,
			want: []manifest.E820Entry{
				{Start: 0x1ffdd000, End: 0x20000000, Type: 2, Name: "Reserved"},
				{Start: 0xfeffc000, End: 0xff000000, Type: 2, Name: "Reserved"},
				{Start: 0xfffc0000, End: 0x100000000, Type: 2, Name: "Reserved"},
			},
		},
		{
			name: "real firmware: ACPI and NVS kept, ranges clipped at 1 MiB and 4 GiB",
			m: []manifest.E820Entry{
				{Start: 0x0, End: 0x9f000, Type: 1},
				{Start: 0x9f000, End: 0x100000, Type: 2}, // below 1 MiB: dropped
				{Start: 0x100000, End: 0x7ff00000, Type: 1},
				{Start: 0x7ff00000, End: 0x7ff80000, Type: 3},
				{Start: 0x7ff80000, End: 0x7ffc0000, Type: 4},
				{Start: 0xff000000, End: 0x100100000, Type: 2}, // crosses 4 GiB: clipped
				{Start: 0x100100000, End: 0x200000000, Type: 1},
				{Start: 0x200000000, End: 0x200100000, Type: 2}, // above 4 GiB: dropped
			},
			want: []manifest.E820Entry{
				{Start: 0x7ff00000, End: 0x7ff80000, Type: 3},
				{Start: 0x7ff80000, End: 0x7ffc0000, Type: 4},
				{Start: 0xff000000, End: 0x100000000, Type: 2},
			},
		},
		{
			name: "range straddling 1 MiB is clipped",
			m:    []manifest.E820Entry{{Start: 0xf0000, End: 0x180000, Type: 2}},
			want: []manifest.E820Entry{{Start: 0x100000, End: 0x180000, Type: 2}},
		},
		{
			name: "only RAM",
			m:    []manifest.E820Entry{{Start: 0, End: 1 << 30, Type: 1}},
		},
		{
			name: "exactly at the cap",
			m:    []manifest.E820Entry{{Start: 0x200000, End: 0x300000, Type: 2}},
			max:  0x100000,
			want: []manifest.E820Entry{{Start: 0x200000, End: 0x300000, Type: 2}},
		},
		{
			name: "q35 MMCONFIG exceeds the cap",
			m: append(append([]manifest.E820Entry{}, seabios512[:5]...),
				manifest.E820Entry{Start: 0xb0000000, End: 0xc0000000, Type: 2, Name: "Reserved"}),
			max:     16 << 20,
			wantErr: "total 0x10023000 bytes",
		},
		{
			name:    "bad entry",
			m:       []manifest.E820Entry{{Start: 0x2000, End: 0x1000, Type: 2}},
			wantErr: "e820[0]: end 0x1000 not above start 0x2000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ranges(tt.m, tt.max)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Ranges: err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Ranges: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Ranges:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// usePath points Path at a fresh file of size bytes for one test.
func usePath(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	old := Path
	Path = p
	t.Cleanup(func() { Path = old })
	return p
}

func TestReadWrite(t *testing.T) {
	p := usePath(t, 3<<20)
	tests := []struct {
		name string
		addr uint64
		size int
	}{
		{"page aligned", 0x100000, 0x2000},
		{"unaligned start and end", 0x123457, 0x3001},
		{"one byte", 0x1fff, 1},
		{"crosses pages", 0x2fff0, 0x20},
		{"whole file tail", 3<<20 - 0x1000, 0x1000},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Repeat([]byte{byte(i + 1), 0xa5, byte(tt.addr)}, tt.size/3+1)[:tt.size]
			if err := Write(tt.addr, data); err != nil {
				t.Fatalf("Write(%#x): %v", tt.addr, err)
			}
			got, err := Read(tt.addr, uint64(tt.size))
			if err != nil {
				t.Fatalf("Read(%#x): %v", tt.addr, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("Read(%#x) differs from what was written", tt.addr)
			}
			// The file holds the bytes at the offset: Write reached the store.
			f, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f[tt.addr:tt.addr+uint64(tt.size)], data) {
				t.Fatalf("file at %#x differs from what was written", tt.addr)
			}
		})
	}

	// Bytes around a write stay as they were.
	before, err := Read(0x200000, 0x3000)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(0x201000, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	after, err := Read(0x200000, 0x3000)
	if err != nil {
		t.Fatal(err)
	}
	copy(before[0x1000:], []byte{1, 2, 3})
	if !bytes.Equal(before, after) {
		t.Error("a 3-byte write changed bytes around it")
	}
}

func TestReadWriteErrors(t *testing.T) {
	usePath(t, 0x10000)
	if _, err := Read(0xff00, 0x200); err == nil || !strings.Contains(err.Error(), "0xff00") {
		t.Errorf("Read past the end: err %v, want one naming 0xff00", err)
	}
	if err := Write(0xfffff, []byte{1, 2}); err == nil || !strings.Contains(err.Error(), "0xfffff") {
		t.Errorf("Write past the end: err %v, want one naming 0xfffff", err)
	}
	if _, err := Read(^uint64(0)-1, 4); err == nil {
		t.Error("Read of an overflowing range: no error")
	}
	if b, err := Read(0x100, 0); err != nil || len(b) != 0 {
		t.Errorf("Read of 0 bytes = %v, %v", b, err)
	}
	Path = filepath.Join(t.TempDir(), "missing")
	if _, err := Read(0, 1); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Read of a missing file: err %v", err)
	}
}

func TestMismatch(t *testing.T) {
	if err := mismatch(0x1000, []byte{1, 2, 3}, []byte{1, 2, 3}); err != nil {
		t.Errorf("equal bytes: %v", err)
	}
	err := mismatch(0xfffc0000, []byte{1, 2, 0xff, 4}, []byte{1, 2, 3, 4})
	if err == nil || !strings.Contains(err.Error(), "0xfffc0002 reads back 0xff, not 0x03") {
		t.Errorf("ROM-like read-back: err %v", err)
	}
}
