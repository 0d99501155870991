package takeover

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/nicmove"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/manifest"
)

// Module is a kernel module image to load, by name, with its parameters.
type Module struct {
	Name   string
	Image  []byte
	Params string
}

// Disk is a whole disk as the running kernel sees it.
type Disk struct {
	Name  string         // sda
	Dev   string         // major:minor
	GUID  string         // GPT disk GUID, "" without a GPT
	Parts map[int]string // partition number → major:minor
}

// DM is the device-mapper interface (agent/dm's Control).
type DM interface {
	List() ([]dm.Info, error)
	Table(name string) ([]dm.Target, error)
	Load(name string, t []dm.Target, readOnly bool) error
	Suspend(name string, f dm.SuspendFlags) error
	Resume(name string) error
}

// System is everything the takeover touches.
type System interface {
	// LoadModule loads a module image; one already loaded is no error.
	LoadModule(m Module) error
	// SetParam writes a loaded module's parameter
	// (/sys/module/MODULE/parameters/NAME).
	SetParam(module, name, value string) error
	// PCIPresent reports whether the kernel has a device at addr.
	PCIPresent(addr string) bool
	PCIRescan() error
	// Claimed reports whether [start, end) is wholly held by iomem
	// entries named name (/proc/iomem).
	Claimed(start, end uint64, name string) (bool, error)
	// OnlineCPUs brings every offline CPU online and says how many it
	// brought.
	OnlineCPUs() (int, error)
	// OnlineMemory onlines memory block n
	// (/sys/devices/system/memory/memoryN); one online already is no
	// error.
	OnlineMemory(n uint64) error
	// Disks lists the whole disks with their GPT GUIDs, but for those
	// whose major:minor is in skip: they are not even opened (a dead
	// disk's I/O never returns).
	Disks(skip map[string]bool) ([]Disk, error)
	DM() (DM, error)
	NIC() nicmove.Sys
	Sleep(d time.Duration)
}

// Line is one thing done, for the console: what, and how long it took.
type Line struct {
	What string
	Took time.Duration
	Err  error
}

func (l Line) String() string {
	s := fmt.Sprintf("%-60s %6.2fs", l.What, l.Took.Seconds())
	if l.Err != nil {
		s += " FAILED: " + l.Err.Error()
	}
	return s
}

// Report is what Apply did.
type Report struct {
	Lines []Line
	cpus  int // hot-added CPUs that Thawed brings online
}

// Failed reports whether any step failed.
func (r *Report) Failed() bool {
	for _, l := range r.Lines {
		if l.Err != nil {
			return true
		}
	}
	return false
}

func (r *Report) step(what string, logf func(string, ...any), f func() error) error {
	t0 := time.Now()
	err := f()
	l := Line{What: what, Took: time.Since(t0), Err: err}
	r.Lines = append(r.Lines, l)
	logf("takeover: %s", l)
	return err
}

// Timeouts for devices to appear after the rescan.
var (
	DiskTimeout = 90 * time.Second
	NICTimeout  = 30 * time.Second
)

// redirected returns the plan's disk rows that moved.
func redirected(p *plan.Plan) []plan.Device {
	var out []plan.Device
	if p == nil {
		return nil
	}
	for _, d := range p.Devices {
		if d.Kind == "disk" && d.Action == plan.Redirect {
			out = append(out, d)
		}
	}
	return out
}

// Quiesce runs right after the resume, before kernel threads thaw: every
// device-mapper device above a moved disk that the capture did not
// suspend (a swap LV) is suspended without flushing, so that nothing
// reaches the dead controller until its table points at the new one. A
// moved disk with filesystems or swap on plain partitions has its bios
// held the same way, by the pack's thaw_redirect from mods.
func Quiesce(sys System, p *plan.Plan, mods []Module, src *manifest.Manifest, logf func(string, ...any)) *Report {
	r := &Report{}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rows := redirected(p)
	if len(rows) == 0 {
		return r
	}
	if rd := p.Redirect; rd != nil {
		what := fmt.Sprintf("hold the bios of %s until the new disk is found: load module %s %s", heldNames(src, rd.Disks), rd.Module, rd.Params)
		r.step(what, logf, func() error {
			for _, m := range mods {
				if m.Name == rd.Module {
					m.Params = rd.Params
					return sys.LoadModule(m)
				}
			}
			return fmt.Errorf("the mailbox carries no %s", rd.Module)
		})
	}
	if len(src.DM) == 0 {
		return r // no device-mapper device to suspend
	}
	c, err := sys.DM()
	if err != nil {
		r.step("device-mapper", logf, func() error { return err })
		return r
	}
	suspended := map[string]bool{}
	for _, d := range src.DM {
		suspended[d.Name] = d.Suspended
	}
	seen := map[string]bool{}
	for _, row := range rows {
		for _, name := range row.Source.DM {
			if suspended[name] || seen[name] {
				continue
			}
			seen[name] = true
			r.step("suspend "+name+" (noflush) until its disk is back", logf, func() error {
				return c.Suspend(name, dm.NoFlush|dm.SkipLockfs)
			})
		}
	}
	return r
}

// Apply applies the device plan p (nil: no plan came; only what the
// capture suspended is resumed) with the modules from the mailbox, on the
// machine the server woke up on. src is the capture's own manifest.
// It goes on after a failed step where it can: a frozen server helps no
// one; the report says what failed.
func Apply(sys System, p *plan.Plan, mods []Module, src *manifest.Manifest, logf func(string, ...any)) *Report {
	r := &Report{}
	if logf == nil {
		logf = func(string, ...any) {}
	}

	// 1. Drivers, from memory, in load order; this machine's extra RAM
	// added first (the pack's thaw_hotadd, which also moves the source's
	// PCI window above it) and onlined; the claim's module with the
	// plan's parameters, unless the window moved above the claim.
	var claim *plan.Claim
	var hot *plan.HotAdd
	if p != nil {
		claim, hot = p.Claim, p.HotAdd
	}
	hotAdded := false
	for _, m := range mods {
		what := "load module " + m.Name
		switch {
		case p != nil && p.Redirect != nil && m.Name == p.Redirect.Module:
			continue // loaded by Quiesce
		case hot != nil && m.Name == hot.Module:
			m.Params = hot.Params
			what = fmt.Sprintf("add %s: load module %s %s", hot.What(), m.Name, m.Params)
		case claim != nil && m.Name == claim.Module && hotAdded && hot.Frees(claim.Start, claim.End):
			logf("takeover: the source's PCI window starts above %#x-%#x now: no claim needed", claim.Start, claim.End-1)
			claim = nil
			continue
		case claim != nil && m.Name == claim.Module:
			m.Params = claim.Params
			what += " " + m.Params
		}
		err := r.step(what, logf, func() error { return sys.LoadModule(m) })
		if hot != nil && m.Name == hot.Module && err == nil && hot.Bytes > 0 {
			hotAdded = true
			r.step(fmt.Sprintf("online %d memory block(s) of %d MiB", hot.Bytes/max(hot.Block, 1), hot.Block>>20), logf, func() error {
				for _, rg := range hot.Ranges {
					for a := rg.Start; a < rg.End; a += hot.Block {
						if err := sys.OnlineMemory(a / hot.Block); err != nil {
							return err
						}
					}
				}
				return nil
			})
		}
		if hot != nil && m.Name == hot.Module && err == nil {
			// CPU hotplug is off while /dev/snapshot is open
			// (PM_HIBERNATION_PREPARE): the CPUs come online in Thawed.
			r.cpus = hot.CPUs
		}
	}
	claimed := true
	if claim != nil {
		n := (claim.End - claim.Start) / max(claim.Zone, 1)
		err := r.step(fmt.Sprintf("claim %#x-%#x from the PCI allocator (%s, %d zones)", claim.Start, claim.End-1, claim.Module, n), logf, func() error {
			ok, err := sys.Claimed(claim.Start, claim.End, claim.Module)
			if err == nil && !ok {
				err = fmt.Errorf("/proc/iomem does not show %s over the whole range", claim.Module)
			}
			return err
		})
		claimed = err == nil
	}

	// 2. The bus rescanned. The controllers of moved disks stay: their
	// restore failed, and removing such a virtio device frees its queues a
	// second time (virtblk_freeze freed them; the failed restore did not
	// allocate new ones), which corrupts the kernel's heap. Their request
	// queues stay quiesced, so nothing reaches them; the new controllers
	// sit at other addresses (the plan refuses one at a stale address).
	rows := redirected(p)
	for _, row := range rows {
		if addr := row.Source.PCI; addr != "" && sys.PCIPresent(addr) {
			logf("takeover: %s of %s (%s) stays in the kernel's PCI list, quiesced", addr, row.Source.Name, row.Source.Driver)
		}
	}
	rescan := p.NeedsRescan()
	switch {
	case rescan && !claimed:
		r.step("rescan the PCI bus", logf, func() error {
			return errors.New("not done: the range is not claimed, and the new devices' BARs would land in RAM")
		})
	case rescan:
		r.step("rescan the PCI bus", logf, sys.PCIRescan)
	}

	// 3. Each moved disk found by its GUID, never touching the dead ones;
	// the dm tables re-pointed.
	stale := staleDisks(src, rows)
	moved := map[uint64]uint64{}
	for _, row := range rows {
		var found Disk
		what := fmt.Sprintf("find disk %s (GUID %s) at %s", row.Source.Name, row.Source.DiskGUID, row.Target.PCI)
		err := r.step(what, logf, func() error {
			var err error
			found, err = waitDisk(sys, row.Source.DiskGUID, partsOf(src, row.Source.Name), stale, DiskTimeout)
			return err
		})
		if err != nil {
			continue
		}
		r.step(fmt.Sprintf("%s is now %s (%s)", row.Source.Name, found.Name, found.Dev), logf, func() error {
			return mapDevs(moved, src, row.Source.Name, found)
		})
		if row.Via == plan.RedirectModule {
			old := diskDev(src, row.Source.Name)
			r.step(fmt.Sprintf("send the bios of %s (%s) to %s (%s): %s", row.Source.Name, old, found.Name, found.Dev, row.Via), logf, func() error {
				return sys.SetParam(row.Via, "to", old+"="+found.Dev)
			})
		}
	}
	if (len(moved) > 0 || len(rows) > 0 || anySuspended(src)) && len(src.DM) > 0 {
		repoint(sys, r, moved, stale, src, logf)
	}

	// 4. NICs.
	if p != nil {
		for _, d := range p.Devices {
			if d.Kind != "nic" || d.Action != plan.Rebind || d.Target == nil {
				continue
			}
			// A virtio-net whose restore failed oopses when closed.
			mv := nicmove.Move{Name: d.Source.Name, MAC: d.Source.MAC, Addresses: d.Source.Addresses, Routes: d.Source.Routes, PCI: d.Target.PCI, OldPCI: d.Source.PCI,
				StaleOpen: d.Source.Driver == "virtio_net"}
			r.step(fmt.Sprintf("NIC %s → %s (%s) with %s", d.Source.Name, d.Target.PCI, d.Target.Driver, d.Source.MAC), logf, func() error {
				res, err := nicmove.Apply(sys.NIC(), mv, NICTimeout, func(f string, a ...any) { logf("  "+f, a...) })
				if err == nil {
					logf("takeover:   %s now %s (was %s); addresses %s; routes %s", d.Source.Name, res.Name, res.KernelName, strings.Join(res.Addresses, " "), strings.Join(res.Routes, ", "))
				}
				return err
			})
		}
	}
	return r
}

// Thawed brings online the CPUs Apply's hot-add found, once the capture
// has thawed the machine and closed /dev/snapshot (the kernel refuses CPU
// hotplug, EBUSY, while it is open). Its step joins r.
func Thawed(sys System, r *Report, logf func(string, ...any)) {
	if r == nil || r.cpus == 0 {
		return
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	want := r.cpus
	r.step(fmt.Sprintf("online %d CPU(s)", want), logf, func() error {
		n, err := sys.OnlineCPUs()
		if err == nil && n < want {
			err = fmt.Errorf("%d of %d came online: the processors were not found present (see the kernel log's thaw_hotadd lines)", n, want)
		}
		return err
	})
}

// diskDev is the major:minor of the source's disk name.
func diskDev(src *manifest.Manifest, name string) string {
	for _, d := range src.Disks {
		if d.Name == name {
			return d.Dev
		}
	}
	return ""
}

// heldNames names the source disks of devs: "vda (254:0)".
func heldNames(src *manifest.Manifest, devs []string) string {
	var out []string
	for _, dev := range devs {
		n := dev
		for _, d := range src.Disks {
			if d.Dev == dev {
				n = fmt.Sprintf("%s (%s)", d.Name, dev)
			}
		}
		out = append(out, n)
	}
	return strings.Join(out, ", ")
}

// namesDead reports whether a table names one of the dead devices.
func namesDead(t []dm.Target, dead map[uint64]bool) bool {
	for _, d := range dm.Devs(t) {
		if dead[d] {
			return true
		}
	}
	return false
}

func anySuspended(src *manifest.Manifest) bool {
	for _, d := range src.DM {
		if d.Suspended {
			return true
		}
	}
	return false
}

// staleDisks are the device numbers of the moved disks as the resumed
// kernel still knows them.
func staleDisks(src *manifest.Manifest, rows []plan.Device) map[string]bool {
	out := map[string]bool{}
	for _, row := range rows {
		for _, d := range src.Disks {
			if d.Name == row.Source.Name && d.Dev != "" {
				out[d.Dev] = true
			}
		}
	}
	return out
}

// partsOf lists the partition numbers of a source disk that dm tables may
// name (those with device numbers).
func partsOf(src *manifest.Manifest, name string) []int {
	var out []int
	for _, d := range src.Disks {
		if d.Name == name {
			for _, p := range d.Partitions {
				if p.Dev != "" {
					out = append(out, p.Number)
				}
			}
		}
	}
	return out
}

// waitDisk polls for a whole disk with the GPT GUID and every partition
// in parts: the kernel reads the partition table after the disk appears.
func waitDisk(sys System, guid string, parts []int, skip map[string]bool, timeout time.Duration) (Disk, error) {
	if guid == "" {
		return Disk{}, errors.New("no GUID to look for")
	}
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		ds, err := sys.Disks(skip)
		if err != nil {
			return Disk{}, err
		}
		seen = seen[:0]
		var partial *Disk
		for _, d := range ds {
			seen = append(seen, d.Name)
			if !strings.EqualFold(d.GUID, guid) {
				continue
			}
			if missing := missingParts(d, parts); len(missing) > 0 {
				partial = &d
				continue
			}
			return d, nil
		}
		if time.Now().After(deadline) {
			if partial != nil {
				return Disk{}, fmt.Errorf("disk %s (GUID %s) shows no partition %v after %s", partial.Name, guid, missingParts(*partial, parts), timeout)
			}
			return Disk{}, fmt.Errorf("no disk with GUID %s appeared in %s (disks: %s)", guid, timeout, strings.Join(seen, " "))
		}
		sys.Sleep(200 * time.Millisecond)
	}
}

func missingParts(d Disk, parts []int) []int {
	var out []int
	for _, n := range parts {
		if _, ok := d.Parts[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// mapDevs records old → new device numbers for the disk and each
// partition, by partition number.
func mapDevs(moved map[uint64]uint64, src *manifest.Manifest, name string, now Disk) error {
	for _, d := range src.Disks {
		if d.Name != name {
			continue
		}
		add := func(old, cur string) error {
			o, ok1 := dm.ParseDev(old)
			n, ok2 := dm.ParseDev(cur)
			if !ok1 || !ok2 {
				return fmt.Errorf("bad device numbers %q → %q", old, cur)
			}
			moved[o] = n
			return nil
		}
		if d.Dev != "" && now.Dev != "" {
			if err := add(d.Dev, now.Dev); err != nil {
				return err
			}
		}
		for _, p := range d.Partitions {
			if p.Dev == "" {
				continue
			}
			cur, ok := now.Parts[p.Number]
			if !ok {
				return fmt.Errorf("%s has no partition %d", now.Name, p.Number)
			}
			if err := add(p.Dev, cur); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("the capture's manifest has no disk %s", name)
}

// repoint loads a re-pointed table into every dm device that names a moved
// device, and resumes those and every device the capture suspended. Lower
// devices come first: a table names its slaves by number.
func repoint(sys System, r *Report, moved map[uint64]uint64, stale map[string]bool, src *manifest.Manifest, logf func(string, ...any)) {
	dead := map[uint64]bool{}
	for dev := range stale {
		if n, ok := dm.ParseDev(dev); ok {
			dead[n] = true
		}
	}
	for _, d := range src.Disks {
		if !stale[d.Dev] {
			continue
		}
		for _, p := range d.Partitions {
			if n, ok := dm.ParseDev(p.Dev); ok {
				dead[n] = true
			}
		}
	}
	c, err := sys.DM()
	if err != nil {
		r.step("device-mapper", logf, func() error { return err })
		return
	}
	infos, err := c.List()
	if err != nil {
		r.step("list device-mapper devices", logf, func() error { return err })
		return
	}
	suspendedByCapture := map[string]bool{}
	for _, d := range src.DM {
		suspendedByCapture[d.Name] = d.Suspended
	}
	tables := map[string][]dm.Target{}
	byDev := map[uint64]string{}
	var ok []dm.Info
	for _, in := range infos {
		t, err := c.Table(in.Name)
		if err != nil {
			r.step("table of "+in.Name, logf, func() error { return err })
			continue
		}
		tables[in.Name], byDev[in.Dev] = t, in.Name
		ok = append(ok, in)
	}
	// Depth: 1 + the deepest dm device a table names.
	depth := map[string]int{}
	var depthOf func(name string, n int) int
	depthOf = func(name string, n int) int {
		if d, ok := depth[name]; ok || n > 16 {
			return d
		}
		d := 0
		for _, dev := range dm.Devs(tables[name]) {
			if below, ok := byDev[dev]; ok && below != name {
				d = max(d, 1+depthOf(below, n+1))
			}
		}
		depth[name] = d
		return d
	}
	sort.SliceStable(ok, func(i, j int) bool { return depthOf(ok[i].Name, 0) < depthOf(ok[j].Name, 0) })
	for _, in := range ok {
		nt, changed := dm.Retarget(tables[in.Name], moved)
		if changed {
			// The console and the log see the table without its keys;
			// the kernel gets the live one, dm-crypt's key with it.
			r.step(fmt.Sprintf("load %s: %s", in.Name, dm.FormatTable(dm.Redact(nt))), logf, func() error { return c.Load(in.Name, nt, in.ReadOnly) })
		}
		if !changed && (in.Suspended || suspendedByCapture[in.Name]) && namesDead(tables[in.Name], dead) {
			// Resuming it would send its held I/O to the dead disk and
			// hang; suspended, only what touches it waits.
			r.step("leave "+in.Name+" suspended", logf, func() error {
				return fmt.Errorf("its table still names the dead disk (%s): its new place was not found", dm.FormatTable(dm.Redact(tables[in.Name])))
			})
			continue
		}
		if changed || in.Suspended || suspendedByCapture[in.Name] {
			r.step("resume "+in.Name, logf, func() error { return c.Resume(in.Name) })
		}
	}
}
