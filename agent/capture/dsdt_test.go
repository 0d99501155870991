package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
)

// acpiDir writes a FACP naming a DSDT at dsdtAt, and a DSDT of n bytes.
func acpiDir(t *testing.T, dsdtAt uint32, n int) string {
	dir := t.TempDir()
	facp := make([]byte, 116)
	copy(facp, "FACP")
	binary.LittleEndian.PutUint32(facp[4:], 116)
	binary.LittleEndian.PutUint32(facp[40:], dsdtAt)
	os.WriteFile(filepath.Join(dir, "FACP"), facp, 0o444)
	dsdt := bytes.Repeat([]byte{0xa5}, n)
	copy(dsdt, "DSDT")
	binary.LittleEndian.PutUint32(dsdt[4:], uint32(n))
	os.WriteFile(filepath.Join(dir, "DSDT"), dsdt, 0o444)
	return dir
}

func TestDSDTStream(t *testing.T) {
	tables := manifest.E820Entry{Start: 0x1fb6d000, End: 0x1fb7f000, Type: 3}
	for _, tc := range []struct {
		name   string
		unread []manifest.E820Entry
		dsdtAt uint32
		n      int
		want   string // the NonRAM entry, or "" for none
		note   string
	}{
		{"carried", []manifest.E820Entry{tables}, 0x1fb7b000, 6438, "0x1fb7b000-0x1fb7c926 type 3 acpi-dsdt", "the DSDT (6438 bytes at 0x1fb7b000) carried"},
		{"its range was read", nil, 0x1fb7b000, 6438, "", ""},
		{"elsewhere", []manifest.E820Entry{tables}, 0x7fe0000, 6438, "", ""},
		{"past the range", []manifest.E820Entry{tables}, 0x1fb7e000, 6438, "", "run past its range's end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			bw, err := bundle.NewWriter(&out, bundle.WriterOptions{ChunkSize: 8192})
			if err != nil {
				t.Fatal(err)
			}
			m := &manifest.Manifest{}
			var notes []string
			logf := func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
			if err := dsdtStream(bw, m, tc.unread, acpiDir(t, tc.dsdtAt, tc.n), logf); err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, r := range m.NonRAM {
				got = fmt.Sprintf("%#x-%#x type %d %s", r.Start, r.End, r.Type, r.Stream)
			}
			if got != tc.want {
				t.Errorf("NonRAM %q, want %q", got, tc.want)
			}
			if tc.note != "" && !strings.Contains(strings.Join(notes, "\n"), tc.note) {
				t.Errorf("notes %q, want %q", notes, tc.note)
			}
		})
	}
}
