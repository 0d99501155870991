package memmap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// writeMemmap lays table out as /sys/firmware/memmap in a new directory.
func writeMemmap(t *testing.T, table []manifest.E820Entry) string {
	t.Helper()
	dir := t.TempDir()
	if err := Write(dir, table); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readTestMemmap(t *testing.T, name string) []manifest.E820Entry {
	t.Helper()
	m, err := Read(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRead(t *testing.T) {
	// Twelve entries: directory 10 comes after 9 (numeric order, not the
	// names' order); a type the kernel does not name is kept as type 0.
	var twelve []manifest.E820Entry
	for i := uint64(0); i < 12; i++ {
		ty := 1 + uint32(i%2)
		twelve = append(twelve, manifest.E820Entry{Start: i << 20, End: (i + 1) << 20, Type: ty, Name: manifest.E820TypeName(ty)})
	}
	twelve[11].Type, twelve[11].Name = 0, "Something New"

	// corrupt writes a map of table with one file of one entry replaced.
	corrupt := func(table []manifest.E820Entry, entry, file, content string) func(*testing.T) string {
		return func(t *testing.T) string {
			dir := writeMemmap(t, table)
			p := filepath.Join(dir, entry, file)
			if content == "" {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}
	}
	fixed := func(dir string) func(*testing.T) string { return func(*testing.T) string { return dir } }

	tests := []struct {
		name string
		dir  func(t *testing.T) string
		want []manifest.E820Entry
		err  string // a part of the error, with the directory for "DIR"
	}{
		{
			name: "cloud VM",
			dir:  fixed(filepath.Join("testdata", "memmap-cloudvm")),
			want: []manifest.E820Entry{
				{Start: 0x0, End: 0x9fc00, Type: 1, Name: "System RAM"},
				{Start: 0x9fc00, End: 0x100000, Type: 2, Name: "Reserved"},
				{Start: 0x100000, End: 0xc0000000, Type: 1, Name: "System RAM"},
				{Start: 0xeec00000, End: 0xfec00000, Type: 2, Name: "Reserved"},
				{Start: 0x100000000, End: 0x640000000, Type: 1, Name: "System RAM"},
			},
		},
		{name: "twelve entries in numeric order", dir: func(t *testing.T) string { return writeMemmap(t, twelve) }, want: twelve},
		{
			name: "other names are skipped",
			dir: func(t *testing.T) string {
				dir := writeMemmap(t, twelve[:2])
				for _, n := range []string{"README", "-1"} {
					if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				return dir
			},
			want: twelve[:2],
		},
		{name: "empty directory", dir: func(t *testing.T) string { return t.TempDir() }},
		{name: "missing directory", dir: fixed(filepath.Join("testdata", "nonexistent")), err: "DIR"},
		{name: "bad end", dir: corrupt(twelve, "3", "end", "0xzz\n"), err: filepath.Join("DIR", "3", "end")},
		{name: "bad start", dir: corrupt(twelve, "4", "start", "four\n"), err: filepath.Join("DIR", "4", "start")},
		{name: "end below start", dir: corrupt(twelve, "5", "end", "0x1\n"), err: filepath.Join("DIR", "5") + ": range 0x500000-0x1"},
		{name: "end at the top of the address space", dir: corrupt(twelve, "5", "end", "0xffffffffffffffff\n"), err: filepath.Join("DIR", "5") + ": range"},
		{name: "type missing", dir: corrupt(twelve, "2", "type", ""), err: filepath.Join("DIR", "2", "type")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			got, err := Read(dir)
			if tt.err != "" {
				want := strings.ReplaceAll(tt.err, "DIR", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Read: %v, %v; want an error with %q", got, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Read:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestWriteRefusesEmptyRange(t *testing.T) {
	if err := Write(t.TempDir(), []manifest.E820Entry{{Start: 5, End: 5, Type: 1}}); err == nil {
		t.Fatal("an empty range was written")
	}
}
