// Package packbuild builds driver packs (images/driverpack): kernel
// modules for one exact Debian kernel release that its flavour does not
// have, such as AHCI and e1000e for the cloud kernels.
//
// A build runs in a Debian chroot of the release's own suite (mmdebstrap,
// kept in the cache per release), so the modules are made by the compiler
// that made the kernel: linux-headers-RELEASE for the build tree and its
// Module.symvers, linux-source of the same package version for the
// driver's source, and the full flavour's headers for its configuration.
// Each module's directory is found from the source tree's Makefiles
// (obj-$(CONFIG_X) += NAME.o) and built out of tree with only the objects
// asked for. Its Kconfig symbol must be a module in Debian's full flavour;
// the other symbols its sources use that the release's flavour does not
// set come from the full flavour too, except those the shared headers use,
// which stay as the flavour has them so that the module and the kernel
// agree on every structure they share.
//
// Every pack also carries thaw's own modules, built from the sources
// embedded here: thaw_hotadd (hotadd/), which adds the new machine's RAM
// and CPUs to the resumed kernel, and thaw_redirect (redirect/), which
// sends the bios of a moved disk with root or swap on plain partitions to
// its new place.
package packbuild
