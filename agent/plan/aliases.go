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

	"github.com/thawlinux/thaw/images/driverpack"
)

// Aliases is a kernel's modalias table: modules.alias plus the aliases of
// built-in drivers (modules.builtin.modinfo).
type Aliases struct {
	Release string
	entries []alias
	// deps maps a module name to its file (relative to the modules tree)
	// and the files it depends on, as modules.dep lists them.
	deps map[string]modDep
	// builtin holds the module files modules.builtin lists.
	builtin map[string]bool
	// Vermagic is the vermagic string of the kernel's modules (read from
	// the first module of the tree): a driver pack must carry the same.
	Vermagic string
	// pack holds the names of modules that come from a driver pack.
	pack map[string]bool
}

// builtinByClass are built-in PCI drivers that match devices by class
// code: before Linux 6.13 modules.builtin.modinfo does not carry a
// built-in driver's PCI table, so their aliases are missing. Each is the
// class part of a modalias and the driver's file in modules.builtin.
var builtinByClass = []struct{ class, module, file string }{
	{"bc01sc08i02", "nvme", "kernel/drivers/nvme/host/nvme.ko"},        // NVMe (PCI_CLASS_STORAGE_EXPRESS)
	{"bc01sc06i01", "ahci", "kernel/drivers/ata/ahci.ko"},              // AHCI SATA
	{"bc0csc03i30", "xhci_pci", "kernel/drivers/usb/host/xhci-pci.ko"}, // USB 3 host
}

// ParseModulesBuiltin reads modules.builtin: the module files built into
// the kernel.
func (a *Aliases) ParseModulesBuiltin(r io.Reader) error {
	if a.builtin == nil {
		a.builtin = map[string]bool{}
	}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if f := strings.TrimSpace(s.Text()); f != "" {
			a.builtin[f] = true
		}
	}
	return s.Err()
}

type modDep struct {
	file string
	deps []string
}

type alias struct {
	pattern, module string
	builtin         bool
	lit             string // the pattern's literal start, before any wildcard
}

func newAlias(pattern, module string, builtin bool) alias {
	lit := pattern
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		lit = pattern[:i]
	}
	return alias{pattern: pattern, module: module, builtin: builtin, lit: lit}
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
		a.entries = append(a.entries, newAlias(f[1], f[2], false))
	}
	return s.Err()
}

// ParseBuiltinModinfo adds the aliases of drivers built into the kernel
// (NUL-separated "module.alias=PATTERN" records).
func (a *Aliases) ParseBuiltinModinfo(b []byte) {
	for _, rec := range bytes.Split(b, []byte{0}) {
		mod, val, ok := strings.Cut(string(rec), ".alias=")
		if ok && mod != "" && !strings.Contains(mod, "=") {
			a.entries = append(a.entries, newAlias(val, mod, true))
		}
	}
}

// ParseModulesDep adds the lines of a modules.dep file
// ("kernel/…/a.ko.xz: kernel/…/b.ko.xz …").
func (a *Aliases) ParseModulesDep(r io.Reader) error {
	if a.deps == nil {
		a.deps = map[string]modDep{}
	}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return fmt.Errorf("modules.dep line %d: %q is not \"FILE: DEPS\"", n, line)
		}
		a.deps[ModuleName(file)] = modDep{file: file, deps: strings.Fields(rest)}
	}
	return s.Err()
}

// ModuleName is the name the kernel gives a module file:
// kernel/drivers/scsi/vmw_pvscsi.ko.xz → vmw_pvscsi (dashes become
// underscores).
func ModuleName(file string) string {
	b := path.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// LoadOrder returns the module files that loading the named modules
// takes, dependencies first, each once, relative to the modules tree. A
// name that modules.dep does not list is an error (built-in drivers have
// no file: leave them out).
func (a *Aliases) LoadOrder(names ...string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(file string, depth int) error
	visit = func(file string, depth int) error {
		name := ModuleName(file)
		if seen[name] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("modules.dep: dependency chain through %s is too deep", name)
		}
		d, ok := a.deps[name]
		if !ok {
			return fmt.Errorf("module %s is not in the image kernel's modules.dep", name)
		}
		seen[name] = true
		// modules.dep lists the whole closure, the deepest last.
		for i := len(d.deps) - 1; i >= 0; i-- {
			if err := visit(d.deps[i], depth+1); err != nil {
				return err
			}
		}
		out = append(out, d.file)
		return nil
	}
	for _, n := range names {
		if err := visit(n, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DependsOn reports whether module name needs module dep (directly or
// not).
func (a *Aliases) DependsOn(name, dep string) bool {
	d, ok := a.deps[ModuleName(name)]
	if !ok {
		return false
	}
	for _, f := range d.deps {
		if ModuleName(f) == ModuleName(dep) {
			return true
		}
	}
	return false
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
		case "modules.dep":
			if err := a.ParseModulesDep(tr); err != nil {
				return nil, err
			}
		case "modules.builtin":
			if err := a.ParseModulesBuiltin(tr); err != nil {
				return nil, err
			}
		default:
			if a.Vermagic == "" && strings.Contains(path.Base(h.Name), ".ko") && h.Typeflag == tar.TypeReg {
				if b, err := Decompress(path.Base(h.Name), io.LimitReader(tr, maxModule)); err == nil {
					if mi, err := driverpack.ParseModinfo(b); err == nil {
						a.Vermagic = mi.Vermagic
					}
				}
			}
		}
	}
	if !found {
		return nil, errors.New("the modules tree has no modules.alias (run depmod on the source)")
	}
	return a, nil
}

// PackFile is the name a pack's module has in a plan's module list.
func PackFile(name string) string { return packDir + name + ".ko" }

const packDir = "pack/"

// IsPackFile reports whether a plan's module file comes from the pack.
func IsPackFile(f string) bool { return strings.HasPrefix(f, packDir) }

// WithPack returns a copy of a whose table also holds the modules of a
// driver pack, after the kernel's own: a device the kernel drives keeps
// its driver, and a module the kernel has is never taken from the pack.
// A pack module's dependencies resolve to the kernel's modules first.
func (a *Aliases) WithPack(p *driverpack.Pack) *Aliases {
	c := *a
	c.entries = append([]alias(nil), a.entries...)
	c.deps = map[string]modDep{}
	for k, v := range a.deps {
		c.deps[k] = v
	}
	c.pack = map[string]bool{}
	for _, m := range p.Header.Modules {
		if _, ok := a.deps[m.Name]; ok {
			continue
		}
		c.pack[m.Name] = true
		for _, pat := range m.Aliases {
			c.entries = append(c.entries, newAlias(pat, m.Name, false))
		}
		d := modDep{file: PackFile(m.Name)}
		for _, dep := range m.Depends {
			if k, ok := a.deps[dep]; ok {
				d.deps = append(d.deps, k.file)
			} else {
				d.deps = append(d.deps, PackFile(dep))
			}
		}
		c.deps[m.Name] = d
	}
	return &c
}

// FromPack reports whether module name comes from the driver pack.
func (a *Aliases) FromPack(name string) bool { return a.pack[name] }

// Match returns the module that drives a device's modalias ("" for none)
// and whether it is built into the kernel.
func (a *Aliases) Match(modalias string) (string, bool) {
	for _, e := range a.entries {
		if ok, _ := path.Match(e.pattern, modalias); ok {
			return e.module, e.builtin
		}
	}
	if m := a.builtinClass(modalias); m != "" {
		return m, true
	}
	return "", false
}

// builtinClass returns the built-in class-matching driver of a PCI
// modalias, "" if none.
func (a *Aliases) builtinClass(modalias string) string {
	if !strings.HasPrefix(modalias, "pci:") {
		return ""
	}
	lower := strings.ToLower(modalias)
	for _, c := range builtinByClass {
		if strings.HasSuffix(lower, c.class) && a.builtin[c.file] {
			return c.module
		}
	}
	return ""
}

// MatchAll returns every module whose alias matches modalias, in table
// order, without duplicates, and whether each is built in.
func (a *Aliases) MatchAll(modalias string) (mods []string, builtin []bool) {
	seen := map[string]bool{}
	for _, e := range a.entries {
		// A modalias that does not start with the pattern's literal start
		// cannot match: most of the 30,000 aliases are ruled out so,
		// before path.Match (in the agent under emulation too).
		if !strings.HasPrefix(modalias, e.lit) {
			continue
		}
		if ok, _ := path.Match(e.pattern, modalias); !ok || seen[e.module] {
			continue
		}
		seen[e.module] = true
		mods, builtin = append(mods, e.module), append(builtin, e.builtin)
	}
	if m := a.builtinClass(modalias); m != "" && !seen[m] {
		mods, builtin = append(mods, m), append(builtin, true)
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
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		err = a.ParseModulesDep(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "modules.dep"), err)
		}
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		err = a.ParseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "modules.builtin"), err)
		}
	}
	return a, nil
}
