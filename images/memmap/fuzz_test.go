package memmap

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/thawlinux/thaw/images/manifest"
)

// FuzzRead: a memory map directory whose start, end and type files hold
// any bytes (a source's map travels in its bundle's memmap stream, a
// target's comes from its firmware): Read returns ranges with End past
// Start or an error, and CheckFits of any two such maps never panics.
func FuzzRead(f *testing.F) {
	f.Add([]byte("0x0\n"), []byte("0x9fbff\n"), []byte("System RAM\n"), []byte("0x100000"), []byte("0x7fffffff"), []byte("Reserved"))
	f.Add([]byte("0"), []byte("0xffffffffffffffff"), []byte(""), []byte("18446744073709551615"), []byte("1"), []byte("ACPI Tables"))
	f.Fuzz(func(t *testing.T, s1, e1, t1, s2, e2, t2 []byte) {
		dir := t.TempDir()
		for i, ent := range [][3][]byte{{s1, e1, t1}, {s2, e2, t2}} {
			d := filepath.Join(dir, strconv.Itoa(i))
			os.MkdirAll(d, 0o755)
			for j, name := range []string{"start", "end", "type"} {
				os.WriteFile(filepath.Join(d, name), ent[j], 0o644)
			}
		}
		m, err := Read(dir)
		if err != nil {
			return
		}
		for _, e := range m {
			if e.End <= e.Start {
				t.Fatalf("entry %+v: end not past start", e)
			}
			if bytes.ContainsAny([]byte(e.Name), "\n") && e.Type != 0 {
				t.Fatalf("entry %+v: a typed name with a newline", e)
			}
		}
		CheckFits(m, m)
		CheckFits(m, []manifest.E820Entry{{Start: 0, End: 1 << 30, Type: 1}})
		CheckFits([]manifest.E820Entry{{Start: 0, End: 1 << 30, Type: 1}}, m)
	})
}
