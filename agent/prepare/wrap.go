package prepare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/agent/dm"
)

// Mapper is the part of device-mapper that Wrap uses (*dm.Control).
type Mapper interface {
	Create(name, uuid string) (dm.Info, error)
	Load(name string, t []dm.Target, readOnly bool) error
	ResumeUdev(name string) error
	Remove(name string) error
}

// Initramfs is where Wrap runs: the initramfs's /sys and /dev.
type Initramfs struct {
	Sys, Dev string // "/sys", "/dev"
	DM       Mapper
	Logf     func(format string, a ...any)
}

// Wrap puts each partition (name=/dev/PART) behind a dm-linear device of
// that name covering all of it, and links /dev/mapper/NAME to it. A
// device that exists already is left as it is. It goes on past a failure
// and returns the failures together: the boot continues with those
// partitions used directly.
func (b *Initramfs) Wrap(args []string) error {
	var errs []error
	for _, a := range args {
		name, dev, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "thaw-") || !strings.HasPrefix(dev, "/dev/") {
			errs = append(errs, fmt.Errorf("%q: want thaw-NAME=/dev/PARTITION", a))
			continue
		}
		if err := b.wrap(name, filepath.Base(dev)); err != nil {
			errs = append(errs, fmt.Errorf("%s over %s: %w", name, dev, err))
		}
	}
	return errors.Join(errs...)
}

func (b *Initramfs) wrap(name, part string) error {
	sys := filepath.Join(b.Sys, "class", "block", part)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err != nil {
		return fmt.Errorf("%s is not a partition: %w", part, err)
	}
	devNum, err := readTrim(filepath.Join(sys, "dev"))
	if err != nil {
		return err
	}
	if _, ok := dm.ParseDev(devNum); !ok {
		return fmt.Errorf("%s/dev: bad device number %q", sys, devNum)
	}
	sz, err := readTrim(filepath.Join(sys, "size"))
	if err != nil {
		return err
	}
	sectors, err := strconv.ParseUint(sz, 10, 64)
	if err != nil || sectors == 0 {
		return fmt.Errorf("%s/size: bad size %q", sys, sz)
	}
	info, err := b.DM.Create(name, "THAW-"+name)
	if err != nil {
		return err
	}
	// A device that cannot be made live is removed: the partition stays
	// free for the boot to use directly, and a later try starts afresh.
	if err := b.DM.Load(name, []dm.Target{{Start: 0, Length: sectors, Type: "linear", Params: devNum + " 0"}}, false); err != nil {
		b.DM.Remove(name)
		return err
	}
	if err := b.DM.ResumeUdev(name); err != nil {
		b.DM.Remove(name)
		return err
	}
	_, minor, _ := strings.Cut(dm.FormatDev(info.Dev), ":")
	node := "dm-" + minor
	link := filepath.Join(b.Dev, "mapper", name)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	// udev may have made the link already (the distribution's dm rules
	// or thaw's own): one to the same device is fine.
	if err := os.Symlink("../"+node, link); err != nil {
		if got, _ := filepath.EvalSymlinks(link); got != filepath.Join(b.Dev, node) {
			return fmt.Errorf("%s: %w", link, err)
		}
	}
	if b.Logf != nil {
		b.Logf("%s (%s) over %s (%s, %d MiB)", name, node, part, devNum, sectors>>11)
	}
	return nil
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}
