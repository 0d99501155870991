package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/thawlinux/thaw/boot/packbuild"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/driverpack"
)

const driverpackHelp = `
Builds kernel modules that the image kernel lacks for one exact kernel
release (uname -r of the captured server), and writes them as a signed
driver pack, DIR/RELEASE.pack (--out DIR). Put the pack where thaw serve serves it (its
directory, or a subdirectory) and boot the agent with thaw.packs=URL of
that directory: when the image kernel has no driver for a disk controller
or NIC of the target, the plan uses the pack's module, and the resumed
server loads it.

  thaw driverpack build --release 6.1.0-50-cloud-amd64 \
      --modules ahci,e1000e --key thaw.key --out /srv/thaw/packs

The build runs as root in a Debian chroot of the release's suite (made by
mmdebstrap and kept under --cache), with the suite's own compiler,
linux-headers-RELEASE and linux-source of the same package version; the
archive keeps only a suite's current kernel, so build for the release the
server runs before you move it. A module is built as Debian's full flavour
builds it, and only if Debian builds it as a module there.

Every pack also carries thaw's own modules, so --modules may be left out:
  thaw_hotadd    gives the resumed server the RAM and CPUs of a bigger
                 target that its memory map lacked (whole memory blocks,
                 added before the PCI rescan);
  thaw_redirect  moves a disk whose root or swap sits on plain partitions
                 (no thaw prepare): from the resume on, the old disk's I/O
                 is held, then sent to the disk at its new place.

The modules are not signed by Debian's key: loading one marks the resumed
kernel tainted (E, unsigned module; O, out of tree) and logs "module
verification failed".
A kernel under lockdown or booted with module.sig_enforce=1 refuses them:
the plan says so before anything is written.
`

func runDriverpack(args []string) error {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(os.Stderr, "usage: thaw driverpack build --release R [--modules NAME,…] --out DIR --key FILE")
		fmt.Fprint(os.Stderr, driverpackHelp)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return &exitError{2, errors.New("driverpack: the one subcommand is build")}
	}
	fs := newFlags("driverpack build", "--release R [--modules NAME,…] --out DIR --key FILE [--suite S] [--cache DIR]", driverpackHelp)
	release := fs.String("release", "", "the image kernel's release (uname -r on the captured server)")
	modules := fs.String("modules", "", "comma-separated module names: ahci,e1000e (none: only thaw's own modules)")
	out := fs.String("out", "", "directory to write RELEASE.pack into")
	keyPath := fs.String("key", "", "minisign secret key that signs the pack: the key that signs the bundles (THAW_KEY_PASSWORD if encrypted)")
	suite := fs.String("suite", "", "Debian suite of the release (default: from the release: 6.1.0-* bookworm, *+deb13-* trixie)")
	cache := fs.String("cache", defaultCache(), "where build roots are kept, one per release (about 1 GiB each)")
	jobs := fs.Int("jobs", 2, "parallel compiler jobs")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *release == "" || *out == "" {
		fs.Usage()
		return &exitError{2, errors.New("--release and --out are required")}
	}
	var names []string
	if *modules != "" {
		names = strings.Split(*modules, ",")
	}
	if *keyPath == "" {
		return &exitError{2, errors.New("--key: the agent loads only packs signed by a key it trusts; give the bundles' signing key (thaw keygen makes one)")}
	}
	key, err := bundle.LoadPrivateKey(*keyPath, os.Getenv("THAW_KEY_PASSWORD"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := packbuild.Build(ctx, packbuild.Host{}, packbuild.Options{
		Release: *release, Modules: names, Suite: *suite,
		Cache: *cache, Key: &key, Jobs: *jobs, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	dst := filepath.Join(*out, driverpack.FileName(*release))
	if err := writeFileAtomic(dst, res.Pack, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %s for %s (%d KiB)\n", dst, strings.Join(res.Modules, " "), *release, len(res.Pack)>>10)
	fmt.Printf("  built with %s; %s; %s\n", res.Built.Compiler, res.Built.Headers, res.Built.Source)
	return nil
}

// defaultCache is $THAW_CACHE, else /var/cache/thaw.
func defaultCache() string {
	if d := os.Getenv("THAW_CACHE"); d != "" {
		return d
	}
	return "/var/cache/thaw"
}

// writeFileAtomic writes data beside path and renames it over path once
// synced: a failed write leaves the old file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, tmp, err := createPartial(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := commitPartial(f, tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
