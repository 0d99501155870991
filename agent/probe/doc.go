// Package probe reads this machine's profile from /proc, /sys and the disks:
// the [manifest.Manifest] that `thaw probe` prints and that the restore agent
// compares with a bundle's manifest before it writes anything.
//
// [Probe] fills the kernel (release, version, command line, hashes of its
// vmlinuz, initrd and modules.alias), the firmware memory map with the digest
// an x86 kernel stores in its hibernation image, the memory size, the CPU,
// the PCI devices, the network interfaces that have a device behind them, the
// disks with their partitions (and, on the live machine, their partition
// tables), the device-mapper devices, the mounted block filesystems and the
// active swap areas.
//
// Probe reads everything under a root directory: "/" on the machine itself,
// or a copied tree of proc/, sys/, boot/ and lib/modules/ in tests. Only with
// "/" does it call uname(2), ask the network stack for addresses, open the
// disks under /dev and run dmsetup. A missing optional source (no
// /sys/firmware/memmap in a container, no /boot) leaves its part empty;
// /proc/cpuinfo and /proc/meminfo are required.
package probe
