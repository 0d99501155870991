// Package harness boots real Debian kernels and guests under QEMU for thaw's
// end-to-end tests: it finds the kernels that scripts/fetch-kernels.sh put in
// the cache, builds small busybox initramfs guests with the kernel modules they
// need, and runs QEMU (always TCG) with the serial console captured, so a test
// can wait for console markers, keep the log as evidence and print it when it
// fails.
package harness
