package memmap

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// Read reads a firmware memory map laid out as /sys/firmware/memmap:
// numbered directories, in their order, holding start, end (inclusive) and
// type. End is exclusive in the result. A type name the kernel does not
// define gives Type 0 and keeps its name. A missing directory is an error;
// an empty one gives no entries.
func Read(dir string) ([]manifest.E820Entry, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var idx []int
	for _, e := range ents {
		i, err := strconv.Atoi(e.Name())
		if err != nil || i < 0 {
			continue
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var m []manifest.E820Entry
	for _, i := range idx {
		d := filepath.Join(dir, strconv.Itoa(i))
		var v [2]uint64
		for j, f := range []string{"start", "end"} {
			path := filepath.Join(d, f)
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			if v[j], err = strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		start, last := v[0], v[1]
		if last < start || last == ^uint64(0) {
			return nil, fmt.Errorf("%s: range %#x-%#x", d, start, last)
		}
		b, err := os.ReadFile(filepath.Join(d, "type"))
		if err != nil {
			return nil, err
		}
		name := strings.TrimSpace(string(b))
		t, _ := manifest.E820Type(name)
		m = append(m, manifest.E820Entry{Start: start, End: last + 1, Type: t, Name: name})
	}
	return m, nil
}

// Write lays m out in dir as /sys/firmware/memmap does, for Read: one
// numbered directory per entry with start, end (inclusive) and type (the
// entry's name, or the kernel's name for its type). A machine's map saved
// this way can stand in for the real one (kexec.Options.MemmapDir).
func Write(dir string, m []manifest.E820Entry) error {
	for i, e := range m {
		if e.End <= e.Start {
			return fmt.Errorf("memmap: entry %d: end %#x not above start %#x", i, e.End, e.Start)
		}
		d := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		name := e.Name
		if name == "" {
			name = manifest.E820TypeName(e.Type)
		}
		for f, v := range map[string]string{
			"start": fmt.Sprintf("%#x\n", e.Start),
			"end":   fmt.Sprintf("%#x\n", e.End-1),
			"type":  name + "\n",
		} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
