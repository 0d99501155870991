package probe

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

func TestParseIomem(t *testing.T) {
	f, err := os.Open("testdata/iomem-i440fx-512MiB")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	es, err := ParseIomem(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 31 {
		t.Errorf("%d entries, want 31", len(es))
	}
	if e := es[12]; e != (IomemEntry{Start: 0x0ba00000, End: 0x0bc3a3bf, Name: "Kernel data", Depth: 1}) {
		t.Errorf("entry 12 = %+v", e)
	}
	want := []manifest.PhysRange{{Start: 0xa0000, End: 0xc0000}, {Start: 0x20000000, End: 0xfec00000}, {Start: 0x100000000, End: 0x180000000}}
	if got := PCIWindows(es); !reflect.DeepEqual(got, want) {
		t.Errorf("PCIWindows = %+v, want %+v", got, want)
	}
	for _, tc := range []struct {
		start, end uint64
		name       string
		want       bool
	}{
		{0x100000, 0x1ffd7000, "System RAM", true},
		{0x100000, 0x1ffd8000, "System RAM", false},
		{0x1000, 0x1ffd7000, "System RAM", false}, // the hole at 9fc00
		{0xfe000000, 0xfe004000, "virtio-pci-modern", true},
		{0x20200000, 0x20201000, "ramoops", false},
		{0x20000000, 0x20200000, "ramoops", true},
		{0x20000000, 0x20200001, "ramoops", false},
		{0x20000000, 0x20100000, "ramoop", false},
	} {
		if got := Covered(es, tc.start, tc.end, tc.name); got != tc.want {
			t.Errorf("Covered(%#x, %#x, %q) = %v, want %v", tc.start, tc.end, tc.name, got, tc.want)
		}
	}
}

func TestParseIomemErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"00000000-00000fff Reserved\n", "line 1: no \" : \""},
		{"00000000 : Reserved\n", "line 1: range \"00000000\" is not START-END"},
		{"0000zz00-00000fff : Reserved\n", "line 1: range"},
		{"00001000-00000fff : Reserved\n", "START <= END"},
		{"  00000000-00000fff : Reserved\n", "line 1: depth 1 without a parent"},
		{"00000000-00000fff : a\n    00000000-00000fff : b\n", "line 2: depth 2 without a parent"},
		{"00000000-00000fff : a\n   00000000-00000fff : b\n", "line 2: odd indentation 3"},
	} {
		_, err := ParseIomem(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseIomem(%q) error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	// Unprivileged readers see zeros: no windows.
	es, err := ParseIomem(strings.NewReader("00000000-00000000 : PCI Bus 0000:00\n"))
	if err != nil || len(PCIWindows(es)) != 0 {
		t.Errorf("zeroed iomem: %v, windows %v", err, PCIWindows(es))
	}
}

func FuzzParseIomem(f *testing.F) {
	if b, err := os.ReadFile("testdata/iomem-i440fx-512MiB"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("00000000-00000fff : a\n  00000000-00000fff : b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ParseIomem(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for i, e := range es {
			if e.End < e.Start || (i == 0 && e.Depth != 0) {
				t.Fatalf("entry %d %+v accepted", i, e)
			}
		}
		for _, w := range PCIWindows(es) {
			if w.End <= w.Start {
				t.Fatalf("window %+v", w)
			}
		}
		if len(es) > 0 {
			Covered(es, es[0].Start, es[0].End, es[0].Name)
		}
	})
}
