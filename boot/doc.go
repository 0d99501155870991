// Package boot holds what boots the restore agent on a target machine: the
// initramfs builder (boot/mkinitramfs: u-root core commands, thaw as uinit,
// the agent kernel's NIC and disk drivers, the agent kernel itself for a
// second stage, trusted public keys) and the PXE files (boot/pxe). The
// builder takes the agent kernel from the kernel cache (boot/kernelcache)
// and writes its base archive with the in-memory cpio builder
// (boot/initramfs).
package boot
