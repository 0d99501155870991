package kexec

import "testing"

func FuzzParseSystab(f *testing.F) {
	f.Add([]byte("ACPI20=0x3fb7e014\nACPI=0x3fb7e000\nSMBIOS=0x3f918000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseSystab(b)
		if err != nil && n != 0 {
			t.Fatalf("an address with an error: %#x %v", n, err)
		}
	})
}
