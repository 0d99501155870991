package coldplug

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Release unbinds this kernel's driver from the PCI device at addr (under
// the sysfs root sys, "/sys"), leaving the device quiesced and powered.
// Before a direct restore the agent releases the devices that the image
// kernel will drive afresh: bound, the agent's driver would put them to
// sleep for the restore (a VMXNET3 goes to D3hot with wake-up filters)
// in a state a freshly probed driver cannot revive. It returns the
// driver's name, "" when none was bound.
func Release(sys, addr string) (string, error) {
	dev := filepath.Join(sys, "bus/pci/devices", addr)
	link, err := os.Readlink(filepath.Join(dev, "driver"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dev); serr != nil {
			return "", fmt.Errorf("release %s: %w", addr, serr)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("release %s: %w", addr, err)
	}
	drv := filepath.Base(link)
	if err := os.WriteFile(filepath.Join(dev, "driver", "unbind"), []byte(addr), 0); err != nil {
		return drv, fmt.Errorf("release %s from %s: %w", addr, drv, err)
	}
	return drv, nil
}
