package coldplug

import (
	"fmt"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

func release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("%w: %w", errNoRelease, err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// Load loads a module and its dependencies from the running kernel's
// tree; a module already loaded, or built in, is not an error.
func Load(name string) error { return probe(name) }

// probe loads a module and its dependencies; a module already loaded is
// not an error.
func probe(name string) error {
	err := kmodule.Probe(name, "")
	if err != nil && strings.Contains(err.Error(), "file exists") {
		return nil
	}
	return err
}
