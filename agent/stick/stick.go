package stick

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/thawlinux/thaw/images/manifest"
)

// The names thaw media usb gives the stick's partitions (GPT partition
// names; the FAT volume labels are the same).
const (
	ESPLabel  = "THAW-ESP"
	DataLabel = "THAWDATA"
	// LogDir is the data partition's folder for the agent's logs: the
	// only place the agent writes on the stick.
	LogDir = "thaw-logs"
	// KernelPath and InitrdPath are the agent's boot files on the ESP.
	KernelPath = "thaw/vmlinuz"
	InitrdPath = "thaw/initramfs.gz"
)

// Medium is what [IsMedium] calls a disk that carries a thaw stick's
// partitions.
const Medium = "thaw stick"

// IsMedium reports whether d carries a partition named like the stick's:
// the agent never writes such a disk.
func IsMedium(d manifest.Disk) bool {
	for _, p := range d.Partitions {
		if p.Label == ESPLabel || p.Label == DataLabel {
			return true
		}
	}
	return false
}

// Stick is a recovery stick found in sysfs.
type Stick struct {
	Disk string // the whole disk, a name under /dev: "sda"
	Data string // the data partition's device: "/dev/sda2"
	ESP  string // the EFI system partition's device, or "" if none
	// Dir and ESPDir are where Mount mounted them.
	Dir    string
	ESPDir string
}

// Find looks in sys (/sys) for a partition named DataLabel, calling
// rescan (which may be nil) between looks, until one appears or wait has
// passed: a USB disk shows up some seconds after its host controller's
// driver loads. Two sticks are an error naming both.
func Find(ctx context.Context, sys string, wait time.Duration, rescan func()) (*Stick, error) {
	deadline := time.Now().Add(wait)
	for {
		found, err := scan(sys)
		if err != nil {
			return nil, err
		}
		switch {
		case len(found) == 1:
			return found[0], nil
		case len(found) > 1:
			var names []string
			for _, s := range found {
				names = append(names, s.Data)
			}
			return nil, fmt.Errorf("%d partitions are named %s (%s): attach one thaw stick only", len(found), DataLabel, strings.Join(names, ", "))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no partition named %s appeared in %s: %w", DataLabel, wait, ErrNotFound)
		}
		if rescan != nil {
			rescan()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// ErrNotFound: no stick is attached (or its driver is missing).
var ErrNotFound = errors.New("no thaw stick found")

// scan reads /sys/class/block: each partition's uevent carries its GPT
// name as PARTNAME.
func scan(sys string) ([]*Stick, error) {
	dir := filepath.Join(sys, "class", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	type part struct{ disk, name, label string }
	var parts []part
	for _, e := range ents {
		ue, err := os.ReadFile(filepath.Join(dir, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		kv := uevent(string(ue))
		if kv["DEVTYPE"] != "partition" {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		// …/block/sda/sda2: the parent directory is the disk.
		parts = append(parts, part{disk: filepath.Base(filepath.Dir(target)), name: orName(kv["DEVNAME"], e.Name()), label: kv["PARTNAME"]})
	}
	var out []*Stick
	for _, p := range parts {
		if p.label != DataLabel {
			continue
		}
		s := &Stick{Disk: p.disk, Data: "/dev/" + p.name}
		for _, q := range parts {
			if q.disk == p.disk && q.label == ESPLabel {
				s.ESP = "/dev/" + q.name
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Data < out[j].Data })
	return out, nil
}

func orName(devname, name string) string {
	if devname != "" {
		return devname
	}
	return name
}

func uevent(s string) map[string]string {
	kv := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// logName is what a log file may be called: the agent makes it from the
// time, the bundle's name and the outcome.
var logName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)

// LogName is the file name for a log: "20261202-101500-web1-refused.log".
// Characters a FAT name cannot hold become '_'.
func LogName(t time.Time, image, outcome string) string {
	base := image[strings.LastIndexAny(image, "/:")+1:]
	base = strings.TrimSuffix(base, ".thaw")
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
				return r
			}
			return '_'
		}, s)
	}
	n := t.UTC().Format("20060102-150405") + "-" + clean(base) + "-" + clean(outcome) + ".log"
	if len(n) > 100 {
		n = n[:96] + ".log"
	}
	return n
}
