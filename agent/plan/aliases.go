package plan

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Aliases is a kernel's modalias table: modules.alias plus the aliases of
// built-in drivers (modules.builtin.modinfo).
type Aliases struct {
	Release string
	entries []alias
}

type alias struct {
	pattern, module string
	builtin         bool
}

// ParseModulesAlias adds the lines of a modules.alias file.
func (a *Aliases) ParseModulesAlias(r io.Reader) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		f := strings.Fields(s.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("modules.alias line %d: %q is not \"alias PATTERN MODULE\"", n, s.Text())
		}
		a.entries = append(a.entries, alias{pattern: f[1], module: f[2]})
	}
	return s.Err()
}

// ParseBuiltinModinfo adds the aliases of drivers built into the kernel
// (NUL-separated "module.alias=PATTERN" records).
func (a *Aliases) ParseBuiltinModinfo(b []byte) {
	for _, rec := range bytes.Split(b, []byte{0}) {
		mod, val, ok := strings.Cut(string(rec), ".alias=")
		if ok && mod != "" && !strings.Contains(mod, "=") {
			a.entries = append(a.entries, alias{pattern: val, module: mod, builtin: true})
		}
	}
}

// FromModulesTar reads the aliases from the tar of a modules tree (the
// bundle's "modules" stream).
func FromModulesTar(r io.Reader) (*Aliases, error) {
	a := &Aliases{}
	tr := tar.NewReader(r)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("modules tar: %w", err)
		}
		switch path.Base(h.Name) {
		case "modules.alias":
			if err := a.ParseModulesAlias(tr); err != nil {
				return nil, err
			}
			a.Release = path.Base(path.Dir(h.Name))
			found = true
		case "modules.builtin.modinfo":
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				return nil, err
			}
			a.ParseBuiltinModinfo(b)
		}
	}
	if !found {
		return nil, errors.New("the modules tree has no modules.alias (run depmod on the source)")
	}
	return a, nil
}

// Match returns the module that drives a device's modalias ("" for none)
// and whether it is built into the kernel.
func (a *Aliases) Match(modalias string) (string, bool) {
	for _, e := range a.entries {
		if ok, _ := path.Match(e.pattern, modalias); ok {
			return e.module, e.builtin
		}
	}
	return "", false
}

// MatchAll returns every module whose alias matches modalias, in table
// order, without duplicates, and whether each is built in.
func (a *Aliases) MatchAll(modalias string) (mods []string, builtin []bool) {
	seen := map[string]bool{}
	for _, e := range a.entries {
		if seen[e.module] {
			continue
		}
		if ok, _ := path.Match(e.pattern, modalias); ok {
			seen[e.module] = true
			mods, builtin = append(mods, e.module), append(builtin, e.builtin)
		}
	}
	return mods, builtin
}

// FromDir reads the aliases of an installed modules tree
// (/lib/modules/RELEASE).
func FromDir(dir string) (*Aliases, error) {
	a := &Aliases{Release: path.Base(dir)}
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, fmt.Errorf("%w (run depmod)", err)
	}
	defer f.Close()
	if err := a.ParseModulesAlias(f); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo")); err == nil {
		a.ParseBuiltinModinfo(b)
	}
	return a, nil
}
