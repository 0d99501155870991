package physmem

import (
	"encoding/binary"
	"strings"
	"testing"
)

func fadt(n int, dsdt32, facs32 uint32, xdsdt, xfacs uint64) []byte {
	b := make([]byte, n)
	copy(b, "FACP")
	le := binary.LittleEndian
	le.PutUint32(b[4:], uint32(n))
	le.PutUint32(b[36:], facs32)
	le.PutUint32(b[40:], dsdt32)
	if n >= 140 {
		le.PutUint64(b[132:], xfacs)
	}
	if n >= 148 {
		le.PutUint64(b[140:], xdsdt)
	}
	return b
}

func TestFADTPointers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		b          []byte
		dsdt, facs uint64
		err        string
	}{
		// OVMF's FADT (116 bytes, ACPI 1.0 layout): the 32-bit fields
		{"short", fadt(116, 0x1fb7b000, 0x1fbdd000, 0, 0), 0x1fb7b000, 0x1fbdd000, ""},
		{"x fields", fadt(276, 0x1fb7b000, 0x1fbdd000, 0x11fb7b000, 0x11fbdd000), 0x11fb7b000, 0x11fbdd000, ""},
		{"x fields zero", fadt(276, 0x1fb7b000, 0x1fbdd000, 0, 0), 0x1fb7b000, 0x1fbdd000, ""},
		{"not a FADT", append([]byte("APIC"), make([]byte, 60)...), 0, 0, "not a FADT"},
		{"cut", fadt(276, 1, 2, 3, 4)[:200], 0, 0, "header length 276"},
		{"tiny", []byte("FAC"), 0, 0, "not a FADT"},
	} {
		dsdt, facs, err := FADTPointers(tc.b)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || dsdt != tc.dsdt || facs != tc.facs {
			t.Errorf("%s: %#x %#x %v", tc.name, dsdt, facs, err)
		}
	}
}

func TestTableLength(t *testing.T) {
	b := make([]byte, 40)
	copy(b, "DSDT")
	binary.LittleEndian.PutUint32(b[4:], 40)
	if n, err := TableLength("DSDT", b); n != 40 || err != nil {
		t.Errorf("%d %v", n, err)
	}
	if _, err := TableLength("SSDT", b); err == nil {
		t.Error("wrong signature accepted")
	}
	if _, err := TableLength("DSDT", b[:39]); err == nil {
		t.Error("cut table accepted")
	}
}

func FuzzFADTPointers(f *testing.F) {
	f.Add(fadt(116, 0x1fb7b000, 0x1fbdd000, 0, 0))
	f.Add(fadt(276, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, b []byte) {
		dsdt, facs, err := FADTPointers(b)
		if err != nil && (dsdt != 0 || facs != 0) {
			t.Fatal("addresses with an error")
		}
	})
}
