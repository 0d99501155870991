package kernelcache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Kernel is a Debian kernel fetched by scripts/fetch-kernels.sh.
type Kernel struct {
	Name    string // debian13-cloud, debian12-full, ...
	Dir     string
	Release string // uname -r
	Vmlinuz string
	Modules string // the lib/modules/RELEASE directory, depmod'ed
}

// Names lists the kernels fetch-kernels.sh knows.
var Names = []string{"debian13-cloud", "debian13-full", "debian12-cloud", "debian12-full"}

// Dir is the build cache: $THAW_CACHE, or build/cache at the top of the
// module (the first directory above the working directory with a go.mod).
func Dir() (string, error) {
	if d := os.Getenv("THAW_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "build", "cache"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kernelcache: no go.mod above the working directory; set THAW_CACHE")
		}
		dir = parent
	}
}

// Load returns the cached kernel called name: the directory
// kernels/NAME of the cache with its release file and vmlinuz.
func Load(name string) (*Kernel, error) {
	cache, err := Dir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "kernels", name)
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, fmt.Errorf("kernelcache: kernel %s is not in %s (run `make kernels`): %w", name, cache, err)
	}
	k := &Kernel{
		Name:    name,
		Dir:     dir,
		Release: strings.TrimSpace(string(rel)),
		Vmlinuz: filepath.Join(dir, "vmlinuz"),
		Modules: filepath.Join(dir, "modules"),
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("kernelcache: kernel %s: %w", name, err)
	}
	return k, nil
}
