package packbuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/driverpack"
)

const release = "6.1.0-50-cloud-amd64" // the release of the testdata module

func TestLocate(t *testing.T) {
	mk := map[string]string{
		"drivers/ata":                       "# SPDX\nobj-$(CONFIG_ATA)\t\t+= libata.o\nobj-$(CONFIG_SATA_AHCI)\t\t+= ahci.o libahci.o\nobj-$(CONFIG_SATA_ACARD_AHCI) += acard-ahci.o libahci.o\n",
		"drivers/phy/socionext":             "obj-$(CONFIG_PHY_UNIPHIER_AHCI)\t+= phy-uniphier-ahci.o\n",
		"drivers/net/ethernet/intel/e1000e": "obj-$(CONFIG_E1000E) += e1000e.o\n\ne1000e-objs := 82571.o ich8lan.o \\\n\tnetdev.o\n",
		"sound/pci/hda":                     "obj-$(CONFIG_SND_HDA_INTEL) += snd-hda-intel.o\n",
		"drivers/a":                         "obj-$(CONFIG_TWICE_A) += twice.o\n",
		"drivers/b":                         "obj-$(CONFIG_TWICE_B) += \\\n\ttwice.o\n",
	}
	dirs, err := Locate(mk, []string{"ahci", "e1000e", "snd_hda_intel"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dirs {
		got = append(got, fmt.Sprintf("%s:%s:%v", d.Dir, strings.Join(d.Objects, ","), d.Symbols))
	}
	want := "drivers/ata:ahci.o,libahci.o:map[CONFIG_SATA_AHCI:m] drivers/net/ethernet/intel/e1000e:e1000e.o:map[CONFIG_E1000E:m] sound/pci/hda:snd-hda-intel.o:map[CONFIG_SND_HDA_INTEL:m]"
	if strings.Join(got, " ") != want {
		t.Errorf("Locate =\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	for _, tc := range []struct{ mod, err string }{
		{"nosuch", "no Makefile"},
		{"twice", "2 directories"},
	} {
		if _, err := Locate(mk, []string{tc.mod}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.mod, err, tc.err)
		}
	}
}

func TestSymbols(t *testing.T) {
	src := []byte("int p = CONFIG_SATA_MOBILE_LPM_POLICY;\n#if IS_ENABLED(CONFIG_SATA_PMP)\n#ifdef CONFIG_HWMON_MODULE\n#ifdef CONFIG_PM\n")
	flavour := map[string]string{"CONFIG_PM": "y"}
	full := map[string]string{"CONFIG_SATA_AHCI": "m", "CONFIG_SATA_MOBILE_LPM_POLICY": "3", "CONFIG_SATA_PMP": "y", "CONFIG_HWMON": "m", "CONFIG_PM": "y"}
	headers := map[string]bool{"CONFIG_SATA_PMP": true}
	d := &moduleDir{Dir: "drivers/ata", Objects: []string{"ahci.o"}, Wanted: []string{"ahci"}, Symbols: map[string]string{"CONFIG_SATA_AHCI": "m"}}
	if err := Symbols(d, src, flavour, full, headers); err != nil {
		t.Fatal(err)
	}
	vars, kc := MakeArgs(d)
	if got := strings.Join(vars, " "); got != "CONFIG_HWMON=m CONFIG_SATA_AHCI=m CONFIG_SATA_MOBILE_LPM_POLICY=3" {
		t.Errorf("vars %q", got)
	}
	if kc != "-DCONFIG_HWMON_MODULE=1 -DCONFIG_SATA_AHCI_MODULE=1 -DCONFIG_SATA_MOBILE_LPM_POLICY=3" {
		t.Errorf("KCFLAGS %q", kc)
	}
	// Not a module in the full flavour, or built into the image kernel.
	for _, tc := range []struct {
		flavour, full map[string]string
		err           string
	}{
		{flavour, map[string]string{"CONFIG_SATA_AHCI": "y"}, "not a module"},
		{flavour, map[string]string{}, "(not set)"},
		{map[string]string{"CONFIG_SATA_AHCI": "y"}, full, "built in already"},
	} {
		d := &moduleDir{Dir: "drivers/ata", Wanted: []string{"ahci"}, Symbols: map[string]string{"CONFIG_SATA_AHCI": "m"}}
		if err := Symbols(d, nil, tc.flavour, tc.full, nil); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("err %v, want %q", err, tc.err)
		}
	}
	if strings.Join(d.Lacking, ",") != "CONFIG_SATA_PMP" {
		t.Errorf("lacking %v, want CONFIG_SATA_PMP (used through a shared header, unset in the flavour)", d.Lacking)
	}
	if got := Kbuild(d, "Makefile"); !strings.Contains(got, "include $(src)/Makefile\nobj-y :=\nobj-m := ahci.o\n") {
		t.Errorf("Kbuild:\n%s", got)
	}
}

func TestUnselected(t *testing.T) {
	sel := map[string][]string{}
	ParseKconfigSelects("config IGB\n\ttristate \"Intel\"\n\tdepends on PCI\n\tselect I2C\n\tselect I2C_ALGOBIT\n\thelp\n\t  select NOT_THIS\n\nconfig IGB_HWMON\n\tbool \"x\"\n\tselect HWMON\nif X\nconfig E1000E\n\tselect CRC32\n", sel)
	if got := strings.Join(sel["CONFIG_IGB"], " "); got != "CONFIG_I2C CONFIG_I2C_ALGOBIT" {
		t.Errorf("IGB selects %q", got)
	}
	d := &moduleDir{Own: []string{"CONFIG_IGB"}, Symbols: map[string]string{"CONFIG_IGB": "m"}}
	if got := Unselected(d, sel, map[string]string{"CONFIG_PCI": "y"}); strings.Join(got, " ") != "I2C I2C_ALGOBIT" {
		t.Errorf("unselected %v", got)
	}
	d = &moduleDir{Own: []string{"CONFIG_E1000E"}, Symbols: map[string]string{"CONFIG_E1000E": "m"}}
	if got := Unselected(d, sel, map[string]string{"CONFIG_CRC32": "y"}); len(got) != 0 {
		t.Errorf("unselected %v", got)
	}
}

func TestSuiteAndFlavour(t *testing.T) {
	for _, tc := range []struct{ rel, suite, full string }{
		{"6.1.0-50-cloud-amd64", "bookworm", "6.1.0-50-amd64"},
		{"6.12.117+deb13-cloud-amd64", "trixie", "6.12.117+deb13-amd64"},
		{"6.12.117+deb13-amd64", "trixie", "6.12.117+deb13-amd64"},
		{"5.10.0-30-amd64", "", "5.10.0-30-amd64"},
	} {
		if s, f := SuiteOf(tc.rel), FullFlavour(tc.rel); s != tc.suite || f != tc.full {
			t.Errorf("%s: %s %s, want %s %s", tc.rel, s, f, tc.suite, tc.full)
		}
	}
}

// fakeSystem plays mmdebstrap, tar, dpkg-query, gcc, make and strip on a
// directory tree: the build root gets the headers' configurations, the
// source tree a driver directory, and make "builds" Debian's ata_generic.
type fakeSystem struct {
	t        *testing.T
	versions map[string]string
	calls    []string
	makeArgs []string
	hotadd   bool
	redirect bool
	// flavourExtra is more of the release's configuration.
	flavourExtra string
}

func (f *fakeSystem) Exec(_ context.Context, out io.Writer, name string, args ...string) error {
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	write := func(p, text string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	switch name {
	case "mmdebstrap":
		root := args[len(args)-2]
		write(filepath.Join(root, "usr/src/linux-headers-"+release+"/.config"), "CONFIG_ATA=m\nCONFIG_PM=y\nCONFIG_ATA_BMDMA=y\n"+f.flavourExtra)
		write(filepath.Join(root, "usr/src/linux-headers-6.1.0-50-amd64/.config"), "CONFIG_ATA=m\nCONFIG_ATA_GENERIC=m\nCONFIG_LOCAL=5\nCONFIG_SHARED=y\n")
		write(filepath.Join(root, "usr/src/linux-headers-6.1.0-50-common/include/linux/libata.h"), "#ifdef CONFIG_SHARED\n")
		write(filepath.Join(root, "usr/src/linux-source-6.1.tar.xz"), "")
	case "tar":
		top := filepath.Join(args[3], "linux-source-6.1")
		if args[4] == "--wildcards" {
			write(filepath.Join(top, "Makefile"), "VERSION = 6\n")
			write(filepath.Join(top, "Kconfig"), "source \"drivers/Kconfig\"\n")
			write(filepath.Join(top, "drivers/ata/Kconfig"), "config ATA_GENERIC\n\ttristate \"Generic ATA support\"\n\tselect ATA_BMDMA\n")
			write(filepath.Join(top, "drivers/ata/Makefile"), "obj-$(CONFIG_ATA) += libata.o\nobj-$(CONFIG_ATA_GENERIC) += ata_generic.o\n")
		} else {
			write(filepath.Join(top, "drivers/ata/ata_generic.c"), "x = CONFIG_LOCAL; y = CONFIG_SHARED; z = CONFIG_PM;\n")
			write(filepath.Join(top, "drivers/ata/libata-core.c"), "w = CONFIG_UNRELATED;\n")
		}
	case "chroot":
		switch args[1] {
		case "dpkg-query":
			v, ok := f.versions[args[len(args)-1]]
			if !ok {
				return fmt.Errorf("exit status 1")
			}
			fmt.Fprint(out, v)
		case "gcc":
			fmt.Fprintln(out, "gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
		case "make":
			// thaw's own modules are made from the testdata fixtures:
			// thaw_redirect's own, and for thaw_hotadd another small
			// module of the release stands in.
			m := strings.TrimPrefix(args[4], "M=")
			name, fixture := "ata_generic", "ata_generic.ko"
			switch path.Base(m) {
			case RedirectModule:
				f.redirect = true
				name, fixture = RedirectModule, RedirectModule+".ko"
			case HotAddModule:
				f.hotadd = true
				name, fixture = HotAddModule, "xt_comment.ko"
			default:
				f.makeArgs = args
			}
			ko, err := os.ReadFile("../../images/driverpack/testdata/" + fixture)
			if err != nil {
				f.t.Fatal(err)
			}
			write(filepath.Join(args[0], m, name+".ko"), string(ko))
		case "strip":
		default:
			return fmt.Errorf("fake: chroot %s", args[1])
		}
	default:
		return fmt.Errorf("fake: %s", name)
	}
	return nil
}

func TestBuild(t *testing.T) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{"linux-headers-" + release: "6.1.176-1", "linux-source-6.1": "6.1.176-1"}
	cache := t.TempDir()
	sys := &fakeSystem{t: t, versions: good}
	var log bytes.Buffer
	res, err := Build(context.Background(), sys, Options{Release: release, Modules: []string{"ata_generic"}, Cache: cache, Key: &priv, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	p, err := driverpack.Read(bytes.NewReader(res.Pack), pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(release, ""); err != nil {
		t.Error(err)
	}
	if strings.Join(p.Names(), ",") != "ata_generic,thaw_redirect" || p.Header.Built.Headers != "linux-headers-"+release+"=6.1.176-1" || p.Header.Built.Suite != "bookworm" {
		t.Errorf("pack header %+v", p.Header)
	}
	args := strings.Join(sys.makeArgs, " ")
	for _, want := range []string{"make -C /usr/src/linux-headers-" + release, "M=/build/linux-source-6.1/drivers/ata", "CONFIG_ATA_GENERIC=m", "CONFIG_LOCAL=5", "-DCONFIG_ATA_GENERIC_MODULE=1 -DCONFIG_LOCAL=5"} {
		if !strings.Contains(args, want) {
			t.Errorf("make %s\nlacks %q", args, want)
		}
	}
	if strings.Contains(args, "SHARED") || strings.Contains(args, "UNRELATED") {
		t.Errorf("make %s\ntakes a symbol of the shared headers or of another object", args)
	}
	kb, _ := os.ReadFile(filepath.Join(cache, "driverpack", release, "root/build/linux-source-6.1/drivers/ata/Kbuild"))
	if !strings.Contains(string(kb), "obj-m := ata_generic.o") {
		t.Errorf("Kbuild:\n%s", kb)
	}

	if sys.hotadd {
		t.Error("thaw_hotadd built for a kernel without CONFIG_MEMORY_HOTPLUG")
	}
	// With memory hotplug, every pack carries thaw_hotadd.
	hsys := &fakeSystem{t: t, versions: good, flavourExtra: "CONFIG_MEMORY_HOTPLUG=y\n"}
	res, err = Build(context.Background(), hsys, Options{Release: release, Modules: []string{"ata_generic"}, Cache: t.TempDir(), Key: &priv})
	if err != nil {
		t.Fatal(err)
	}
	if !hsys.hotadd || len(res.Modules) != 3 {
		t.Errorf("with CONFIG_MEMORY_HOTPLUG: hot-add built %v, modules %v", hsys.hotadd, res.Modules)
	}

	if !sys.redirect || !hsys.redirect {
		t.Error("a pack without thaw_redirect")
	}
	// No modules named: thaw's own only, no source tree unpacked.
	osys := &fakeSystem{t: t, versions: good, flavourExtra: "CONFIG_MEMORY_HOTPLUG=y\n"}
	res, err = Build(context.Background(), osys, Options{Release: release, Cache: t.TempDir(), Key: &priv})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Modules, ","); got != "xt_comment,thaw_redirect" { // xt_comment stands in for thaw_hotadd
		t.Errorf("a pack of thaw's own modules holds %s", got)
	}
	for _, c := range osys.calls {
		if strings.HasPrefix(c, "tar") {
			t.Errorf("the source tree unpacked for no module: %s", c)
		}
	}

	// The build root is kept: a second build runs no mmdebstrap.
	sys2 := &fakeSystem{t: t, versions: good}
	if _, err := Build(context.Background(), sys2, Options{Release: release, Modules: []string{"ata_generic"}, Cache: cache, Key: &priv}); err != nil {
		t.Fatal(err)
	}
	for _, c := range sys2.calls {
		if strings.HasPrefix(c, "mmdebstrap") {
			t.Error("build root made again")
		}
	}

	for _, tc := range []struct {
		name string
		opt  Options
		vers map[string]string
		err  string
	}{
		{"source of another version", Options{Modules: []string{"ata_generic"}}, map[string]string{"linux-headers-" + release: "6.1.176-1", "linux-source-6.1": "6.1.170-3"}, "would not match"},
		{"unknown module", Options{Modules: []string{"nosuch"}}, good, "no Makefile"},
		{"unknown suite", Options{Release: "5.10.0-30-amd64", Modules: []string{"x"}}, good, "--suite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opt
			if o.Release == "" {
				o.Release = release
			}
			o.Cache, o.Key = t.TempDir(), &priv
			_, err := Build(context.Background(), &fakeSystem{t: t, versions: tc.vers}, o)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}
