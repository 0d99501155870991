// Package harness boots real Debian kernels and guests under QEMU for thaw's
// end-to-end tests: it finds the kernels that scripts/fetch-kernels.sh put in
// the cache, builds small busybox initramfs guests with the kernel modules they
// need, and runs QEMU (always TCG) with the serial console captured, so a test
// can wait for console markers, keep the log as evidence and print it when it
// fails.
//
// The kernel cache and the cpio builder are shipped packages
// (boot/kernelcache, boot/initramfs) that boot/mkinitramfs uses too; the
// harness re-exports them as [Kernel], [LoadKernel], [CacheDir] and
// [Initramfs]. Nothing shipped imports the harness.
package harness
