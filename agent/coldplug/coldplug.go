package coldplug

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
)

// Device is one device that asked for a driver.
type Device struct {
	Path     string   `json:"path"` // under /sys/bus
	Modalias string   `json:"modalias"`
	Modules  []string `json:"modules,omitempty"` // loaded for it
	Builtin  bool     `json:"builtin,omitempty"`
	Err      string   `json:"error,omitempty"`
}

// Result is what a coldplug run did.
type Result struct {
	Loaded  []string `json:"loaded"`
	Devices []Device `json:"devices"`
}

// Config says where to look; zero values mean the running system.
type Config struct {
	Sys     string                           // default /sys
	Modules string                           // default /lib/modules/$(uname -r)
	Load    func(module string) error        // default kmodule.Probe
	Logf    func(format string, args ...any) // progress
	Buses   []string                         // default pci, virtio, scsi, usb
	// Settle is how long to wait for more devices after a round that
	// loaded a module (host adapters scan their buses asynchronously);
	// default 1 s.
	Settle time.Duration
}

// Run loads the modules that match the present devices, repeating while
// new devices appear, at most 5 rounds.
func Run(c Config) (*Result, error) {
	if c.Sys == "" {
		c.Sys = "/sys"
	}
	if c.Modules == "" {
		rel, err := release()
		if err != nil {
			return nil, err
		}
		c.Modules = filepath.Join("/lib/modules", rel)
	}
	if c.Load == nil {
		c.Load = probe
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if len(c.Buses) == 0 {
		// scsi: a host adapter's disks need the disk driver (sd_mod),
		// found by the SCSI device's own modalias. usb: a USB
		// controller's devices (the thaw stick: usb-storage; a
		// keyboard: usbhid).
		c.Buses = []string{"pci", "virtio", "scsi", "usb"}
	}
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	al, err := plan.FromDir(c.Modules)
	if err != nil {
		return nil, fmt.Errorf("coldplug: %w", err)
	}
	res := &Result{}
	done := map[string]bool{}   // device paths handled
	tried := map[string]error{} // modules tried, and how it went
	loadedLast := false
	for round := 0; round < 8; round++ {
		var fresh []string
		for _, bus := range c.Buses {
			ms, _ := filepath.Glob(filepath.Join(c.Sys, "bus", bus, "devices", "*", "modalias"))
			sort.Strings(ms)
			for _, m := range ms {
				if !done[m] {
					fresh = append(fresh, m)
				}
			}
		}
		if len(fresh) == 0 {
			if !loadedLast {
				break
			}
			// A driver just loaded may still be finding its devices.
			loadedLast = false
			time.Sleep(c.Settle)
			continue
		}
		for _, m := range fresh {
			done[m] = true
			b, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			d := Device{Path: strings.TrimPrefix(filepath.Dir(m), c.Sys+"/bus/"), Modalias: strings.TrimSpace(string(b))}
			mods, builtin := al.MatchAll(d.Modalias)
			var errs []string
			for i, mod := range mods {
				if builtin[i] {
					d.Builtin = true
					continue
				}
				err, done := tried[mod]
				if !done {
					err = c.Load(mod)
					tried[mod] = err
					if err == nil {
						loadedLast = true
						res.Loaded = append(res.Loaded, mod)
						c.Logf("loaded %s for %s (%s)", mod, d.Path, d.Modalias)
					}
				}
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v", mod, err))
					continue
				}
				d.Modules = append(d.Modules, mod)
			}
			d.Err = strings.Join(errs, "; ")
			res.Devices = append(res.Devices, d)
		}
	}
	return res, nil
}

// Unclaimed lists the devices that no module loaded for and no built-in
// driver claims.
func (r *Result) Unclaimed() []Device {
	var out []Device
	for _, d := range r.Devices {
		if len(d.Modules) == 0 && !d.Builtin {
			out = append(out, d)
		}
	}
	return out
}

var errNoRelease = errors.New("coldplug: cannot read the kernel release")
