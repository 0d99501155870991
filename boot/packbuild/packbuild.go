package packbuild

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/driverpack"
)

// Options say what to build.
type Options struct {
	Release string   // uname -r of the image kernel: 6.1.0-50-cloud-amd64
	Modules []string // module names: ahci, e1000e
	Suite   string   // bookworm or trixie; "" : from the release
	Cache   string   // where build roots are kept (one per release)
	Mirror  string   // Debian archive; "" : http://deb.debian.org/debian
	Key     *minisign.PrivateKey
	Jobs    int
	Log     io.Writer // progress lines
}

// System runs the commands a build needs; Exec runs one, with its output
// going to out. Tests put a fake here.
type System interface {
	Exec(ctx context.Context, out io.Writer, name string, args ...string) error
}

// Result is what a build made.
type Result struct {
	Pack    []byte   // the pack file
	Modules []string // the modules in it, wanted ones and the ones they came with
	Built   driverpack.BuildInfo
}

// Build builds the modules for the release and packs them. It reads these
// stages top to bottom: the build root, the source tree's Makefiles, each
// module's directory and configuration, the build itself, the pack.
func Build(ctx context.Context, sys System, opt Options) (*Result, error) {
	b := &build{sys: sys, opt: opt, log: opt.Log}
	if b.log == nil {
		b.log = io.Discard
	}
	if err := b.plan(); err != nil {
		return nil, err
	}
	if err := b.root(ctx); err != nil {
		return nil, err
	}
	if err := b.locate(ctx); err != nil {
		return nil, err
	}
	if err := b.compile(ctx); err != nil {
		return nil, err
	}
	if err := b.own(ctx); err != nil {
		return nil, err
	}
	return b.pack()
}

type build struct {
	sys     System
	opt     Options
	log     io.Writer
	rootDir string // the build root (a Debian chroot)
	// full is the release of the same ABI's full flavour, whose
	// configuration says how Debian builds a driver the flavour lacks.
	full     string
	srcPkg   string // linux-source-6.1
	built    driverpack.BuildInfo
	dirs     []*moduleDir
	flavour  map[string]string // the release's configuration (read by compile)
	products []string          // built .ko files, paths in the root
}

// moduleDir is one source directory to build, with what it builds.
type moduleDir struct {
	Dir     string            // drivers/ata, relative to the source tree
	Objects []string          // obj-m: ahci.o libahci.o
	Wanted  []string          // the modules asked for in it
	Own     []string          // their Kconfig symbols (obj-$(CONFIG_X))
	Symbols map[string]string // CONFIG_X → its value for this build
	// Lacking are symbols its sources use through the shared headers
	// that the flavour leaves unset and the full flavour sets: a
	// subsystem the image kernel was built without, which no module of
	// this directory can bring.
	Lacking []string
}

func (b *build) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "driverpack: "+format+"\n", args...)
}

// plan checks the options and derives the suite, the full flavour and the
// source package.
func (b *build) plan() error {
	o := &b.opt
	if o.Release == "" || strings.ContainsAny(o.Release, "/ ") {
		return fmt.Errorf("--release %q: give the image kernel's uname -r (6.1.0-50-cloud-amd64)", o.Release)
	}
	for _, m := range o.Modules {
		if !regexp.MustCompile(`^[a-zA-Z0-9_-]+$`).MatchString(m) {
			return fmt.Errorf("--modules: %q is not a module name", m)
		}
	}
	if o.Suite == "" {
		o.Suite = SuiteOf(o.Release)
	}
	if o.Suite == "" {
		return fmt.Errorf("release %s: its Debian suite is not known from the name: give --suite bookworm or --suite trixie", o.Release)
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	if o.Jobs <= 0 {
		o.Jobs = 2
	}
	b.full = FullFlavour(o.Release)
	mm := regexp.MustCompile(`^(\d+\.\d+)`).FindString(o.Release)
	if mm == "" {
		return fmt.Errorf("release %s: no version at its start", o.Release)
	}
	b.srcPkg = "linux-source-" + mm
	b.built.Suite = o.Suite
	return nil
}

// SuiteOf is the Debian suite whose kernels carry release: "+deb13" names
// trixie (6.12), "6.1.0-" bookworm; "" : not known.
func SuiteOf(release string) string {
	switch {
	case strings.Contains(release, "+deb13"):
		return "trixie"
	case strings.HasPrefix(release, "6.1.0-"):
		return "bookworm"
	}
	return ""
}

// FullFlavour is the release of the same ABI's generic flavour:
// 6.1.0-50-cloud-amd64 → 6.1.0-50-amd64.
func FullFlavour(release string) string {
	return strings.Replace(release, "-cloud-", "-", 1)
}

// root makes (or reuses) the build root: a Debian chroot of the suite with
// its compiler, the release's headers, the full flavour's headers (for its
// configuration) and the kernel source of the same version.
func (b *build) root(ctx context.Context) error {
	o := b.opt
	b.rootDir = filepath.Join(o.Cache, "driverpack", o.Release, "root")
	if _, err := os.Stat(filepath.Join(b.rootDir, ".thaw-complete")); err == nil {
		b.logf("build root %s (cached)", b.rootDir)
	} else {
		os.RemoveAll(b.rootDir)
		if err := os.MkdirAll(filepath.Dir(b.rootDir), 0o755); err != nil {
			return err
		}
		pkgs := []string{"make", "gcc", "libc6-dev", "binutils", "xz-utils", "linux-headers-" + o.Release, b.srcPkg}
		if b.full != o.Release {
			pkgs = append(pkgs, "linux-headers-"+b.full)
		}
		b.logf("build root: mmdebstrap %s with %s (a few minutes; kept in %s)", o.Suite, strings.Join(pkgs, ","), b.rootDir)
		var out bytes.Buffer
		if err := b.sys.Exec(ctx, &out, "mmdebstrap", "--variant=apt", "--include="+strings.Join(pkgs, ","), o.Suite, b.rootDir, o.Mirror); err != nil {
			return fmt.Errorf("build root: mmdebstrap %s: %w\n%s\nfix: check that the archive has linux-headers-%s (the archive keeps only the current kernel ABI of a suite: build for the release it has)", o.Suite, err, tail(out.String(), 12), o.Release)
		}
		if err := os.WriteFile(filepath.Join(b.rootDir, ".thaw-complete"), nil, 0o644); err != nil {
			return err
		}
	}
	hv, err := b.dpkgVersion(ctx, "linux-headers-"+o.Release)
	if err != nil {
		return err
	}
	sv, err := b.dpkgVersion(ctx, b.srcPkg)
	if err != nil {
		return err
	}
	if hv != sv {
		return fmt.Errorf("build root: linux-headers-%s is %s but %s is %s: the module would not match the kernel; build for the archive's current release, or remove %s to fetch again", o.Release, hv, b.srcPkg, sv, b.rootDir)
	}
	b.built.Headers = "linux-headers-" + o.Release + "=" + hv
	b.built.Source = b.srcPkg + "=" + sv
	var cc bytes.Buffer
	if err := b.sys.Exec(ctx, &cc, "chroot", b.rootDir, "gcc", "--version"); err == nil {
		b.built.Compiler = strings.TrimSpace(strings.SplitN(cc.String(), "\n", 2)[0])
	}
	return nil
}

func (b *build) dpkgVersion(ctx context.Context, pkg string) (string, error) {
	var out bytes.Buffer
	if err := b.sys.Exec(ctx, &out, "chroot", b.rootDir, "dpkg-query", "-W", "-f", "${Version}", pkg); err != nil {
		return "", fmt.Errorf("build root %s: %s is not installed: %w (remove the directory to build it again)", b.rootDir, pkg, err)
	}
	return strings.TrimSpace(out.String()), nil
}

// srcTop is the source tree's directory inside the build root.
func (b *build) srcTop() string { return filepath.Join(b.rootDir, "build", b.srcPkg) }

// locate unpacks the source tree's Makefiles, finds the directory and the
// Kconfig symbol of every wanted module, and unpacks those directories.
func (b *build) locate(ctx context.Context) error {
	if len(b.opt.Modules) == 0 {
		b.logf("no --modules: the pack carries thaw's own modules only")
		return nil
	}
	tarball := filepath.Join(b.rootDir, "usr", "src", b.srcPkg+".tar.xz")
	top := b.srcTop()
	_, errMk := os.Stat(filepath.Join(top, "Makefile"))
	_, errKc := os.Stat(filepath.Join(top, "Kconfig"))
	if errMk != nil || errKc != nil {
		b.logf("unpacking the Makefiles and Kconfig files of %s", path.Base(tarball))
		if err := os.MkdirAll(filepath.Dir(top), 0o755); err != nil {
			return err
		}
		var out bytes.Buffer
		if err := b.sys.Exec(ctx, &out, "tar", "-xJf", tarball, "-C", filepath.Dir(top), "--wildcards", "*/Makefile", "*/Kbuild", "*/Kconfig*"); err != nil {
			return fmt.Errorf("unpack %s: %w\n%s", tarball, err, tail(out.String(), 5))
		}
	}
	mk, err := readMakefiles(top)
	if err != nil {
		return err
	}
	dirs, err := Locate(mk, b.opt.Modules)
	if err != nil {
		return err
	}
	b.dirs = dirs
	var want []string
	for _, d := range dirs {
		want = append(want, b.srcPkg+"/"+d.Dir)
	}
	b.logf("unpacking %s", strings.Join(want, " "))
	var out bytes.Buffer
	if err := b.sys.Exec(ctx, &out, "tar", append([]string{"-xJf", tarball, "-C", filepath.Dir(top)}, want...)...); err != nil {
		return fmt.Errorf("unpack %s: %w\n%s", strings.Join(want, " "), err, tail(out.String(), 5))
	}
	return nil
}

// readMakefiles reads every Makefile and Kbuild under top, keyed by their
// directory relative to top.
func readMakefiles(top string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || (d.Name() != "Makefile" && d.Name() != "Kbuild") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, filepath.Dir(p))
		out[filepath.ToSlash(rel)] += string(b) + "\n"
		return nil
	})
	return out, err
}

var objLine = regexp.MustCompile(`^obj-\$\((CONFIG_[A-Z0-9_]+)\)\s*[+:]?=\s*(.*)$`)

// Locate finds the directory of each module: the one whose Makefile has
// obj-$(CONFIG_X) += NAME.o. Modules in one directory share it.
func Locate(makefiles map[string]string, modules []string) ([]*moduleDir, error) {
	byDir := map[string]*moduleDir{}
	for _, m := range modules {
		var found []string
		for _, file := range []string{m, strings.ReplaceAll(m, "_", "-")} {
			for dir, text := range makefiles {
				for _, line := range joinLines(text) {
					g := objLine.FindStringSubmatch(line)
					if g == nil {
						continue
					}
					objs := strings.Fields(g[2])
					for _, o := range objs {
						if o != file+".o" {
							continue
						}
						d := byDir[dir]
						if d == nil {
							d = &moduleDir{Dir: dir, Symbols: map[string]string{}}
							byDir[dir] = d
						}
						d.Wanted = appendNew(d.Wanted, m)
						d.Own = appendNew(d.Own, g[1])
						d.Symbols[g[1]] = "m"
						for _, o := range objs {
							if strings.HasSuffix(o, ".o") {
								d.Objects = appendNew(d.Objects, o)
							}
						}
						found = appendNew(found, dir)
					}
				}
			}
			if len(found) > 0 {
				break
			}
		}
		switch {
		case len(found) == 0:
			return nil, fmt.Errorf("module %s: no Makefile in the kernel source builds %s.o", m, m)
		case len(found) > 1:
			sort.Strings(found)
			return nil, fmt.Errorf("module %s: built in %d directories (%s): the name is ambiguous", m, len(found), strings.Join(found, ", "))
		}
	}
	var out []*moduleDir
	for _, d := range byDir {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

// joinLines splits a Makefile into logical lines (backslash continuations
// joined, comments dropped).
func joinLines(text string) []string {
	var out []string
	var cur strings.Builder
	s := bufio.NewScanner(strings.NewReader(text))
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, strings.TrimSpace(cur.String()))
	}
	return out
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// ParseConfig reads a kernel .config: CONFIG_X → y, m, a number or a
// quoted string.
func ParseConfig(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = v
		}
	}
	return out, s.Err()
}

var symRef = regexp.MustCompile(`CONFIG_[A-Z0-9_]+`)

// Symbols settles the configuration of one directory's build. A module the
// flavour lacks is built as the full flavour builds it: its own symbols
// must be m there. Symbols the directory's sources use that the flavour
// does not set are taken from the full flavour, unless a shared header
// uses them (inHeaders): those change structures the flavour's kernel
// shares with the module, so they stay as the flavour has them.
func Symbols(d *moduleDir, sources []byte, flavour, full map[string]string, inHeaders map[string]bool) error {
	for sym := range d.Symbols {
		if v := full[sym]; v != "m" {
			return fmt.Errorf("%s (%s): Debian's full flavour has %s=%s, not a module: thaw builds only what Debian builds as a module", strings.Join(d.Wanted, ","), d.Dir, sym, orNotSet(v))
		}
		if v := flavour[sym]; v == "y" {
			return fmt.Errorf("%s (%s): the image kernel has %s built in already", strings.Join(d.Wanted, ","), d.Dir, sym)
		}
	}
	for _, sym := range symRef.FindAllString(string(sources), -1) {
		sym = strings.TrimSuffix(sym, "_MODULE")
		if _, set := flavour[sym]; set {
			continue
		}
		if inHeaders[sym] {
			if v := full[sym]; (v == "y" || v == "m") && d.Symbols[sym] == "" {
				d.Lacking = appendNew(d.Lacking, sym)
			}
			continue
		}
		if v, ok := full[sym]; ok && d.Symbols[sym] == "" {
			d.Symbols[sym] = v
		}
	}
	return nil
}

func orNotSet(v string) string {
	if v == "" {
		return "(not set)"
	}
	return v
}

var (
	kconfigEntry  = regexp.MustCompile(`^(?:menu)?config\s+([A-Z0-9_]+)\s*$`)
	kconfigSelect = regexp.MustCompile(`^\s+select\s+([A-Z0-9_]+)`)
)

// ParseKconfigSelects reads Kconfig text: each config symbol and the
// symbols it selects (unconditionally or not: a select with "if" is
// counted too, which errs on the side of refusing).
func ParseKconfigSelects(text string, into map[string][]string) {
	cur := ""
	for _, line := range strings.Split(text, "\n") {
		if m := kconfigEntry.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if t := strings.TrimSpace(line); line != "" && line[0] != ' ' && line[0] != '\t' || t == "help" || t == "---help---" {
			cur = "" // another statement, or the help text up to the next entry
			continue
		}
		if m := kconfigSelect.FindStringSubmatch(line); m != nil && cur != "" {
			into["CONFIG_"+cur] = appendNew(into["CONFIG_"+cur], "CONFIG_"+m[1])
		}
	}
}

// readKconfig reads every Kconfig file of the source tree.
func readKconfig(top string) (map[string][]string, error) {
	out := map[string][]string{}
	err := filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "Kconfig") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ParseKconfigSelects(string(b), out)
		return nil
	})
	return out, err
}

// Unselected are the symbols a directory's modules select that the
// flavour does not set: subsystems the image kernel lacks.
func Unselected(d *moduleDir, selects map[string][]string, flavour map[string]string) []string {
	var out []string
	for _, own := range d.Own {
		for _, sel := range selects[own] {
			if _, ok := flavour[sel]; !ok && d.Symbols[sel] == "" {
				out = appendNew(out, strings.TrimPrefix(sel, "CONFIG_"))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Kbuild is the Kbuild file written into a module's directory: the
// directory's own rules (included), then only the wanted objects.
func Kbuild(d *moduleDir, orig string) string {
	return fmt.Sprintf("# written by thaw driverpack build\ninclude $(src)/%s\nobj-y :=\nobj-m := %s\n", orig, strings.Join(d.Objects, " "))
}

// MakeArgs are the make variables and compiler flags that give a
// directory's build its symbols.
func MakeArgs(d *moduleDir) (vars []string, kcflags string) {
	var defs []string
	for _, k := range slices.Sorted(maps.Keys(d.Symbols)) {
		v := d.Symbols[k]
		vars = append(vars, k+"="+v)
		switch v {
		case "y":
			defs = append(defs, "-D"+k+"=1")
		case "m":
			defs = append(defs, "-D"+k+"_MODULE=1")
		default:
			defs = append(defs, "-D"+k+"="+v)
		}
	}
	return vars, strings.Join(defs, " ")
}

// compile configures and builds each directory against the release's
// headers, then strips the modules' debugging sections.
func (b *build) compile(ctx context.Context) error {
	o := b.opt
	flavour, err := readConfig(filepath.Join(b.rootDir, "usr", "src", "linux-headers-"+o.Release, ".config"))
	if err != nil {
		return err
	}
	b.flavour = flavour
	if len(b.dirs) == 0 {
		return nil
	}
	full, err := readConfig(filepath.Join(b.rootDir, "usr", "src", "linux-headers-"+b.full, ".config"))
	if err != nil {
		return err
	}
	inHeaders, err := headerSymbols(b.rootDir, o.Release)
	if err != nil {
		return err
	}
	kconfig, err := readKconfig(b.srcTop())
	if err != nil {
		return err
	}
	for _, d := range b.dirs {
		dir := filepath.Join(b.srcTop(), filepath.FromSlash(d.Dir))
		src, err := sources(dir, d.Objects)
		if err != nil {
			return err
		}
		if err := Symbols(d, src, flavour, full, inHeaders); err != nil {
			return err
		}
		if missing := Unselected(d, kconfig, flavour); len(missing) > 0 {
			return fmt.Errorf("%s (%s): its Kconfig selects %s, which the image kernel %s was built without: a driver pack cannot add a subsystem to a kernel; move to hardware the kernel drives, or run the server on Debian's full flavour",
				strings.Join(d.Wanted, ","), d.Dir, strings.Join(missing, " "), o.Release)
		}
		orig := "Makefile"
		if _, err := os.Stat(filepath.Join(dir, "Kbuild.orig")); err == nil {
			orig = "Kbuild.orig"
		} else if _, err := os.Stat(filepath.Join(dir, "Kbuild")); err == nil {
			if err := os.Rename(filepath.Join(dir, "Kbuild"), filepath.Join(dir, "Kbuild.orig")); err != nil {
				return err
			}
			orig = "Kbuild.orig"
		}
		if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte(Kbuild(d, orig)), 0o644); err != nil {
			return err
		}
		vars, kc := MakeArgs(d)
		inRoot := "/" + filepath.ToSlash(must(filepath.Rel(b.rootDir, dir)))
		args := append([]string{b.rootDir, "make", "-C", "/usr/src/linux-headers-" + o.Release, "M=" + inRoot, fmt.Sprintf("-j%d", o.Jobs), "KCFLAGS=" + kc}, vars...)
		args = append(args, "modules")
		b.logf("building %s in %s (%s)", strings.Join(d.Objects, " "), d.Dir, strings.Join(vars, " "))
		var out bytes.Buffer
		if err := b.sys.Exec(ctx, &out, "chroot", args...); err != nil {
			hint := ""
			if len(d.Lacking) > 0 {
				sort.Strings(d.Lacking)
				hint = fmt.Sprintf("\n%s: the image kernel %s was built without %s, which Debian's full flavour has and these sources use through the kernel's own headers; a driver pack cannot add that: move to hardware the kernel can drive, or run the server on Debian's full flavour", strings.Join(d.Wanted, ","), o.Release, strings.Join(d.Lacking, " "))
			}
			return fmt.Errorf("build %s: %w\n%s%s", d.Dir, err, tail(out.String(), 20), hint)
		}
		for _, obj := range d.Objects {
			ko := filepath.Join(dir, strings.TrimSuffix(obj, ".o")+".ko")
			if _, err := os.Stat(ko); err != nil {
				return fmt.Errorf("build %s: %s was not made", d.Dir, path.Base(ko))
			}
			if err := b.sys.Exec(ctx, &out, "chroot", b.rootDir, "strip", "--strip-debug", "/"+filepath.ToSlash(must(filepath.Rel(b.rootDir, ko)))); err != nil {
				return fmt.Errorf("strip %s: %w", ko, err)
			}
			b.products = append(b.products, ko)
		}
	}
	return nil
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func readConfig(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("kernel configuration: %w", err)
	}
	defer f.Close()
	return ParseConfig(f)
}

// headerSymbols are the CONFIG_ symbols the release's shared headers use.
func headerSymbols(root, release string) (map[string]bool, error) {
	out := map[string]bool{}
	common := filepath.Join(root, "usr", "src", "linux-headers-"+strings.TrimSuffix(strings.TrimSuffix(release, "-amd64"), "-cloud")+"-common")
	if _, err := os.Stat(common); err != nil {
		// trixie names it RELEASE-common too; find the one that is there.
		m, _ := filepath.Glob(filepath.Join(root, "usr", "src", "linux-headers-*-common"))
		if len(m) != 1 {
			return nil, fmt.Errorf("build root: no single linux-headers-*-common directory (%d found)", len(m))
		}
		common = m[0]
	}
	for _, sub := range []string{"include", "arch/x86/include"} {
		if _, err := os.Stat(filepath.Join(common, sub)); err != nil && sub != "include" {
			continue
		}
		err := filepath.WalkDir(filepath.Join(common, sub), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".h") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, s := range symRef.FindAll(b, -1) {
				out[strings.TrimSuffix(string(s), "_MODULE")] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sources concatenates the C sources of a directory's objects (all of
// its C sources when an object has none of its own name: a composite
// module) and its headers.
func sources(dir string, objects []string) ([]byte, error) {
	own := map[string]bool{}
	for _, o := range objects {
		c := strings.TrimSuffix(o, ".o") + ".c"
		if _, err := os.Stat(filepath.Join(dir, c)); err != nil {
			own = nil
			break
		}
		own[c] = true
	}
	var all []byte
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		c := strings.HasSuffix(p, ".c") && (own == nil || own[d.Name()])
		if !c && !strings.HasSuffix(p, ".h") {
			return nil
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	return all, err
}

// HotAddModule is the module every pack carries that adds the new
// machine's RAM to a resumed kernel (hotadd/thaw_hotadd.c, GPL).
const HotAddModule = "thaw_hotadd"

// RedirectModule is the module every pack carries that sends a moved
// disk's bios to its new place, for filesystems and swap on plain
// partitions (redirect/thaw_redirect.c, GPL).
const RedirectModule = "thaw_redirect"

//go:embed hotadd/thaw_hotadd.c
var hotaddSource []byte

//go:embed redirect/thaw_redirect.c
var redirectSource []byte

// own builds thaw's own modules for the release: thaw_redirect, and
// thaw_hotadd when its kernel can add memory (CONFIG_MEMORY_HOTPLUG).
func (b *build) own(ctx context.Context) error {
	o := b.opt
	if b.flavour["CONFIG_MEMORY_HOTPLUG"] != "y" {
		b.logf("%s: the kernel cannot add memory (no CONFIG_MEMORY_HOTPLUG): %s left out", o.Release, HotAddModule)
	} else if err := b.ownModule(ctx, HotAddModule, hotaddSource, "adds the new machine's RAM and CPUs to the resumed kernel"); err != nil {
		return err
	}
	return b.ownModule(ctx, RedirectModule, redirectSource, "sends a moved disk's bios to its new place")
}

func (b *build) ownModule(ctx context.Context, name string, source []byte, what string) error {
	o := b.opt
	dir := filepath.Join(b.rootDir, "build", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".c"), source, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte("obj-m := "+name+".o\n"), 0o644); err != nil {
		return err
	}
	b.logf("building %s (%s)", name, what)
	var out bytes.Buffer
	if err := b.sys.Exec(ctx, &out, "chroot", b.rootDir, "make", "-C", "/usr/src/linux-headers-"+o.Release, "M=/build/"+name, fmt.Sprintf("-j%d", o.Jobs), "modules"); err != nil {
		return fmt.Errorf("build %s: %w\n%s", name, err, tail(out.String(), 20))
	}
	ko := filepath.Join(dir, name+".ko")
	if err := b.sys.Exec(ctx, &out, "chroot", b.rootDir, "strip", "--strip-debug", "/build/"+name+"/"+name+".ko"); err != nil {
		return fmt.Errorf("strip %s: %w", ko, err)
	}
	b.products = append(b.products, ko)
	return nil
}

// pack writes the built modules into a signed pack.
func (b *build) pack() (*Result, error) {
	var buf bytes.Buffer
	w := driverpack.NewWriter(&buf, b.opt.Release)
	res := &Result{Built: b.built}
	for _, ko := range b.products {
		data, err := os.ReadFile(ko)
		if err != nil {
			return nil, err
		}
		if err := w.Add(data); err != nil {
			return nil, fmt.Errorf("%s: %w", ko, err)
		}
		mi, _ := driverpack.ParseModinfo(data)
		if !strings.HasPrefix(mi.Vermagic, b.opt.Release+" ") {
			return nil, fmt.Errorf("%s: vermagic %q is not the release %s", ko, mi.Vermagic, b.opt.Release)
		}
		res.Modules = append(res.Modules, mi.Name)
	}
	if b.opt.Key == nil {
		return nil, fmt.Errorf("no signing key")
	}
	if err := w.Close(b.built, time.Now().UTC().Format(time.RFC3339), *b.opt.Key); err != nil {
		return nil, err
	}
	res.Pack = buf.Bytes()
	return res, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
