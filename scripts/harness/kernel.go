package harness

import "github.com/thawlinux/thaw/boot/kernelcache"

// Kernel is a Debian kernel fetched by scripts/fetch-kernels.sh.
type Kernel = kernelcache.Kernel

// Kernels lists the names fetch-kernels.sh knows.
var Kernels = kernelcache.Names

// CacheDir is where kernels and built guests live: $THAW_CACHE, or build/cache
// at the top of the module.
func CacheDir() (string, error) { return kernelcache.Dir() }

// LoadKernel returns the cached kernel called name.
func LoadKernel(name string) (*Kernel, error) { return kernelcache.Load(name) }
