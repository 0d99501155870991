package manifest

import (
	"strings"
	"testing"
)

func valid() *Manifest {
	return &Manifest{Version: Version, Kind: "export",
		E820:   []E820Entry{{0, 0x9fc00, 1, "System RAM"}, {0x100000, 0x1000000, 1, "System RAM"}},
		Disks:  []Disk{{Name: "vda", Size: 1 << 30, Partitions: []Partition{{Number: 1, Start: 1 << 20, Size: 512 << 20}}}},
		Resume: &Resume{Disk: 0, Partition: 1, HeaderOffset: 1 << 20}}
}

func TestParse(t *testing.T) {
	b, err := valid().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Manifest)
		want string
	}{
		{"version", func(m *Manifest) { m.Version = 9 }, "version 9"},
		{"e820-order", func(m *Manifest) { m.E820[1].Start = 0x1000 }, "e820[1]"},
		{"e820-empty", func(m *Manifest) { m.E820[0].End = 0 }, "e820[0]"},
		{"partition", func(m *Manifest) { m.Disks[0].Partitions[0].Size = 2 << 30 }, "partition 0"},
		{"resume-disk", func(m *Manifest) { m.Resume.Disk = 3 }, "resume.disk"},
		{"resume-offset", func(m *Manifest) { m.Resume.HeaderOffset = 7 }, "header_offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.edit(m)
			b, _ := m.Marshal()
			_, err := Parse(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	b, _ := valid().Marshal()
	f.Add(b)
	f.Add([]byte(`{"version":1,"disks":[{"size":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if _, err := m.Marshal(); err != nil {
			t.Fatal(err)
		}
	})
}
