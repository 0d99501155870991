package probe

import "testing"

// A disk's first sector is whatever the disk holds.
func FuzzParseMBR(f *testing.F) {
	s := make([]byte, 512)
	s[510], s[511] = 0x55, 0xaa
	s[446+4], s[446+8], s[446+12] = 0x83, 1, 8
	f.Add(s)
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 512 {
			b = append(b, make([]byte, 512-len(b))...)
		}
		parseMBR(b[:512])
	})
}
