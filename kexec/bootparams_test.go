package kexec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

func TestE820RoundTrip(t *testing.T) {
	full := make([]manifest.E820Entry, E820Max)
	for i := range full {
		full[i] = manifest.E820Entry{Start: uint64(i) << 24, End: uint64(i)<<24 + 0x1000, Type: uint32(i%5 + 1), Name: TypeName(uint32(i%5 + 1))}
	}
	tests := []struct {
		name  string
		table []manifest.E820Entry
	}{
		{"seabios 256 MiB", seabios256},
		{"seabios 512 MiB", seabios512},
		{"one entry", []manifest.E820Entry{{Start: 0, End: 1 << 40, Type: 1, Name: "System RAM"}}},
		{"128 entries", full},
		{"empty", []manifest.E820Entry{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Start from a page full of another table and garbage.
			bp := bytes.Repeat([]byte{0xa5}, BootParamsSize)
			if err := EncodeE820(bp, full); err != nil {
				t.Fatal(err)
			}
			before := append([]byte(nil), bp...)
			if err := EncodeE820(bp, tt.table); err != nil {
				t.Fatalf("EncodeE820: %v", err)
			}
			got, err := DecodeE820(bp)
			if err != nil {
				t.Fatalf("DecodeE820: %v", err)
			}
			if !reflect.DeepEqual(got, tt.table) {
				t.Errorf("round trip:\n got %v\nwant %v", got, tt.table)
			}
			if int(bp[0x1e8]) != len(tt.table) {
				t.Errorf("e820_entries at 0x1e8 = %d, want %d", bp[0x1e8], len(tt.table))
			}
			end := 0x2d0 + 20*len(tt.table)
			if !bytes.Equal(bp[end:0xcd0], make([]byte, 0xcd0-end)) {
				t.Error("unused e820 slots not zeroed")
			}
			// Nothing outside the count and the table changed.
			for _, r := range [][2]int{{0, 0x1e8}, {0x1e9, 0x2d0}, {0xcd0, BootParamsSize}} {
				if !bytes.Equal(bp[r[0]:r[1]], before[r[0]:r[1]]) {
					t.Errorf("bytes %#x-%#x changed", r[0], r[1])
				}
			}
		})
	}
}

func TestE820Layout(t *testing.T) {
	// The entry layout the kernel reads: addr u64, size u64, type u32.
	bp := make([]byte, BootParamsSize)
	if err := EncodeE820(bp, []manifest.E820Entry{{Start: 0x100000, End: 0x1ffdd000, Type: 1}}); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0xd0, 0xed, 0x1f, 0, 0, 0, 0, 1, 0, 0, 0}
	if !bytes.Equal(bp[0x2d0:0x2d0+20], want) {
		t.Errorf("entry bytes % x, want % x", bp[0x2d0:0x2d0+20], want)
	}
}

func TestE820Errors(t *testing.T) {
	bp := make([]byte, BootParamsSize)
	if err := EncodeE820(bp, make([]manifest.E820Entry, E820Max+1)); !errors.Is(err, ErrTooManyEntries) {
		t.Errorf("129 entries: err %v, want ErrTooManyEntries", err)
	}
	if err := EncodeE820(bp, []manifest.E820Entry{{Start: 0x1000, End: 0x1000, Type: 1}}); err == nil || !strings.Contains(err.Error(), "e820[0]") {
		t.Errorf("empty entry: err %v", err)
	}
	if err := EncodeE820(bp[:100], seabios256); err == nil {
		t.Error("short page: no error")
	}
	bp[0x1e8] = 129
	if _, err := DecodeE820(bp); err == nil || !strings.Contains(err.Error(), "0x1e8") {
		t.Errorf("decode 129 entries: err %v", err)
	}
	bp[0x1e8] = 1
	if _, err := DecodeE820(bp); err == nil || !strings.Contains(err.Error(), "e820_table[0]") {
		t.Errorf("decode a zero-size entry: err %v", err)
	}
}

func TestPatch(t *testing.T) {
	le := binary.LittleEndian
	for _, keepEFI := range []bool{false, true} {
		bp := bytes.Repeat([]byte{0xee}, BootParamsSize)
		params{initrdStart: 0x100000, initrdSize: 0x123456, cmdLinePtr: 0x224000, cmdLineSize: 42, keepEFI: keepEFI}.patch(bp)
		for _, f := range []struct {
			name string
			off  int
			want uint32
		}{
			{"ramdisk_image", 0x218, 0x100000},
			{"ramdisk_size", 0x21c, 0x123456},
			{"cmd_line_ptr", 0x228, 0x224000},
			{"cmdline_size", 0x238, 42},
			{"ext_ramdisk_image", 0xc0, 0},
			{"ext_ramdisk_size", 0xc4, 0},
			{"ext_cmd_line_ptr", 0xc8, 0},
		} {
			if got := le.Uint32(bp[f.off:]); got != f.want {
				t.Errorf("%s (%#x) = %#x, want %#x", f.name, f.off, got, f.want)
			}
		}
		if got := le.Uint64(bp[0x250:]); got != 0 {
			t.Errorf("setup_data = %#x, want 0", got)
		}
		if bp[0x1ef] != 0 {
			t.Errorf("sentinel = %#x, want 0", bp[0x1ef])
		}
		if efi := bp[0x1c0:0x1e0]; bytes.Equal(efi, make([]byte, 32)) == keepEFI {
			t.Errorf("keepEFI %v: efi_info % x", keepEFI, efi)
		}
		if le.Uint64(bp[0x70:]) != 0xeeeeeeeeeeeeeeee {
			t.Error("acpi_rsdp_addr changed")
		}
	}
}

// An EFI stub boot leaves acpi_rsdp_addr 0: the RSDP from the EFI system
// table goes there; one already set is kept.
func TestPatchRSDP(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct{ have, rsdp, want uint64 }{
		{0, 0x3fb7e014, 0x3fb7e014},
		{0xf5a40, 0x3fb7e014, 0xf5a40},
		{0, 0, 0},
	} {
		bp := make([]byte, BootParamsSize)
		le.PutUint64(bp[0x70:], tc.have)
		params{rsdp: tc.rsdp}.patch(bp)
		if got := le.Uint64(bp[0x70:]); got != tc.want {
			t.Errorf("%+v: acpi_rsdp_addr %#x", tc, got)
		}
	}
}

func TestParseSystab(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"ACPI20=0x3fb7e014\nACPI=0x3fb7e000\nSMBIOS=0x3f918000\n", 0x3fb7e014, false},
		{"ACPI=0x3fb7e000\nSMBIOS=0x3f918000\n", 0x3fb7e000, false},
		{"SMBIOS=0x3f918000\n", 0, false},
		{"ACPI20=zz\n", 0, true},
		{"ACPI20=0x0\n", 0, true},
	} {
		got, err := ParseSystab([]byte(tc.in))
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%q: %#x %v", tc.in, got, err)
		}
	}
}
