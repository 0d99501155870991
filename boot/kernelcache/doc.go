// Package kernelcache finds the Debian kernels that scripts/fetch-kernels.sh
// put in the build cache (make kernels): [Load] returns one by name with its
// image, its release and its depmod'ed modules tree. The cache is
// $THAW_CACHE, or build/cache at the top of the module ([Dir]).
//
// boot/mkinitramfs takes the agent kernel from here; the end-to-end test
// harness boots these kernels.
package kernelcache
