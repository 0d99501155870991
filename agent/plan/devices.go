package plan

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/thawlinux/thaw/images/manifest"
)

// Actions of a device row.
const (
	Keep     = "keep"     // the same device at the same place: nothing to do
	Redirect = "redirect" // a disk on another controller: its dm tables are re-pointed
	Rebind   = "rebind"   // a NIC elsewhere: the new one takes the old name, MAC and addresses
	Refuse   = "refuse"   // the move cannot work: the plan refuses it
	None     = "none"     // nothing can be done; the move goes on without it
)

// Driver origins: where the image kernel's driver for a target device
// comes from.
const (
	OriginBuiltin = "builtin" // built into the image kernel
	OriginLoaded  = "loaded"  // bound to a device of this kind on the source: in the image's memory
	OriginModule  = "module"  // a module of the image kernel, carried in the mailbox
	OriginPack    = "pack"    // a module of the driver pack, carried in the mailbox
	OriginNone    = "none"    // the image kernel has no driver for it
)

// Device is one row of the device plan: a source disk or NIC and what
// becomes of it on this machine.
type Device struct {
	Kind   string     `json:"kind"` // disk or nic
	Source DeviceEnd  `json:"source"`
	Target *DeviceEnd `json:"target,omitempty"`
	Action string     `json:"action"`
	Why    string     `json:"why"`
	Fix    string     `json:"fix,omitempty"`
	// Via is the pack module that moves a disk whose filesystems or
	// swap sit on plain partitions: thaw_redirect sends its bios to the
	// new disk.
	Via string `json:"via,omitempty"`
}

// DeviceEnd is one side of a row.
type DeviceEnd struct {
	Name      string   `json:"name,omitempty"`       // vda, enp0s2 (target: the agent kernel's name)
	PCI       string   `json:"pci,omitempty"`        // the controller or NIC
	Vendor    string   `json:"vendor,omitempty"`     // 0x15ad
	DeviceID  string   `json:"device_id,omitempty"`  // 0x07c0
	Driver    string   `json:"driver,omitempty"`     // source: bound there; target: the image kernel's
	Origin    string   `json:"origin,omitempty"`     // target: builtin, loaded, module, none
	Modules   []string `json:"modules,omitempty"`    // target: the module files it takes, load order
	MAC       string   `json:"mac,omitempty"`        // NIC
	Addresses []string `json:"addresses,omitempty"`  // NIC, CIDR
	Routes    []string `json:"routes,omitempty"`     // NIC
	DM        []string `json:"dm,omitempty"`         // disk: device-mapper devices above it
	DiskGUID  string   `json:"disk_guid,omitempty"`  // disk: its GPT GUID, how the resumed kernel finds it
	Movable   bool     `json:"movable,omitempty"`    // source disk: root and swap reached through dm
	Stale     bool     `json:"stale_nic,omitempty"`  // target NIC: sits where a source NIC of another model was
	Partition []string `json:"partitions,omitempty"` // disk: major:minor of the source's partitions
}

// pciOf returns the device at addr in m's PCI list.
func pciOf(m *manifest.Manifest, addr string) *manifest.PCIDevice {
	for i := range m.PCI {
		if m.PCI[i].Address == addr {
			return &m.PCI[i]
		}
	}
	return nil
}

// sameDevice: the same model at the same address.
func sameDevice(a, b *manifest.PCIDevice) bool {
	return a != nil && b != nil && a.Address == b.Address && a.Vendor == b.Vendor && a.Device == b.Device && a.Modalias == b.Modalias
}

// targetDriver says which driver of the image kernel drives dev and where
// it comes from; mods are the module files it takes (load order).
func targetDriver(src *manifest.Manifest, dev *manifest.PCIDevice, aliases *Aliases) (driver, origin string, mods []string, err error) {
	if dev == nil {
		return "", OriginNone, nil, nil
	}
	for _, sd := range src.PCI {
		if sd.Modalias == dev.Modalias && dev.Modalias != "" && sd.Driver != "" && sd.Driver != "virtio-pci" {
			driver, origin = sd.Driver, OriginLoaded
		}
	}
	if aliases == nil {
		if driver == "" {
			return "", "", nil, nil // unknown: the bundle carries no modules tree
		}
		return driver, origin, nil, nil
	}
	mod, builtin := aliases.Match(dev.Modalias)
	switch {
	case mod == "" && driver != "":
		return driver, origin, nil, nil
	case mod == "":
		return "", OriginNone, nil, nil
	case builtin:
		return mod, OriginBuiltin, nil, nil
	}
	want := []string{mod}
	// A SCSI or ATA host adapter's disks need the SCSI disk driver, which
	// udev would load by the disk's own modalias: the resumed kernel has
	// no udev running when the plan is applied.
	if aliases.DependsOn(mod, "scsi_mod") || aliases.DependsOn(mod, "libata") {
		if _, ok := aliases.deps["sd_mod"]; ok {
			want = append(want, "sd_mod")
		}
	}
	mods, err = aliases.LoadOrder(want...)
	if aliases.FromPack(mod) {
		return mod, OriginPack, mods, err
	}
	return mod, OriginModule, mods, err
}

// noDriverFix is the fix for a target device the image kernel has no
// driver for: the driver pack command that would make one, named by the
// module this machine's (the agent's) kernel bound to it.
func noDriverFix(aliases *Aliases, dev *manifest.PCIDevice, what string) string {
	mod := "MODULE"
	if dev != nil && dev.Driver != "" {
		mod = strings.ReplaceAll(dev.Driver, "-", "_")
	}
	return fmt.Sprintf("build a driver pack for the image kernel (thaw driverpack build --release %s --modules %s --out DIR), serve it and boot with thaw.packs=URL of DIR; or restore onto a %s the image kernel drives",
		releaseOf(aliases), mod, what)
}

// DMAbove lists the device-mapper devices whose slaves include the disk or
// one of its partitions, directly or through other dm devices.
func DMAbove(m *manifest.Manifest, d manifest.Disk) []string {
	below := map[string]bool{d.Name: true}
	for _, p := range d.Partitions {
		if p.Name != "" {
			below[p.Name] = true
		}
	}
	var out []string
	for changed := true; changed; {
		changed = false
		for _, dm := range m.DM {
			_, minor, _ := strings.Cut(dm.Dev, ":")
			kname := "dm-" + minor
			if below[dm.Name] {
				continue
			}
			for _, s := range dm.Slaves {
				if below[s] {
					below[dm.Name], below[kname], changed = true, true, true
					out = append(out, dm.Name)
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// KeyringCrypt names the dm-crypt devices directly on disk d (or one of its
// partitions) whose key is a kernel keyring reference (":64:logon:…"), as
// LUKS2 volumes opened by cryptsetup have: their key cannot be read back,
// so their table cannot be reloaded to point elsewhere. A crypt device
// whose table holds the key itself (the manifest shows it hidden) is
// reloaded by the resumed process with the key the kernel holds.
func KeyringCrypt(m *manifest.Manifest, d manifest.Disk) []string {
	on := map[string]bool{d.Name: true}
	for _, p := range d.Partitions {
		on[p.Name] = true
	}
	var out []string
	for _, x := range m.DM {
		direct := false
		for _, s := range x.Slaves {
			direct = direct || on[s]
		}
		if !direct {
			continue
		}
		for _, line := range strings.Split(x.Table, "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && f[2] == "crypt" && strings.HasPrefix(f[4], ":") {
				out = append(out, x.Name)
				break
			}
		}
	}
	return out
}

// Movable reports whether every mounted filesystem and active swap on disk
// d is reached through device-mapper, so that the resumed kernel can be
// pointed at the disk in its new place; the reasons name what is not.
func Movable(m *manifest.Manifest, d manifest.Disk) (bool, []string) {
	devs := map[string]string{}
	names := map[string]bool{d.Name: true}
	if d.Dev != "" {
		devs[d.Dev] = "the disk /dev/" + d.Name
	}
	for _, p := range d.Partitions {
		if p.Dev != "" {
			devs[p.Dev] = "the partition /dev/" + p.Name
		}
		if p.Name != "" {
			names[p.Name] = true
		}
	}
	var why []string
	for _, mt := range m.Mounts {
		if n, ok := devs[mt.Dev]; ok {
			why = append(why, fmt.Sprintf("%s is mounted from %s", mt.Target, n))
		}
	}
	for _, s := range m.Swaps {
		if names[path.Base(s.Path)] {
			why = append(why, fmt.Sprintf("the swap %s is a partition", s.Path))
		}
	}
	return len(why) == 0, why
}

// devices builds the device plan: every source disk (mapped by the disk
// plan) and every source NIC with a PCI device.
func (p *Plan) devices(src, dst *manifest.Manifest, aliases *Aliases) {
	var mods []string
	addMods := func(files []string) {
		for _, f := range files {
			dup := false
			for _, m := range mods {
				dup = dup || m == f
			}
			if !dup {
				mods = append(mods, f)
			}
		}
	}
	byName := map[string]manifest.Disk{}
	for _, d := range dst.Disks {
		byName[d.Name] = d
	}
	for i, s := range src.Disks {
		row := Device{Kind: "disk", Source: DeviceEnd{Name: s.Name, PCI: s.PCI, Driver: s.Driver, DM: DMAbove(src, s), DiskGUID: s.DiskGUID, Movable: s.Movable}}
		if sp := pciOf(src, s.PCI); sp != nil {
			row.Source.Vendor, row.Source.DeviceID = sp.Vendor, sp.Device
		}
		for _, pt := range s.Partitions {
			if pt.Dev != "" {
				row.Source.Partition = append(row.Source.Partition, pt.Dev)
			}
		}
		var t *manifest.Disk
		if i < len(p.Disks) && p.Disks[i].Target != "" {
			if d, ok := byName[p.Disks[i].Target]; ok {
				t = &d
			}
		}
		if t == nil {
			row.Action, row.Why = Refuse, "no target disk for it (see the disk check)"
			p.Devices = append(p.Devices, row)
			continue
		}
		tp := pciOf(dst, t.PCI)
		row.Target = &DeviceEnd{Name: t.Name, PCI: t.PCI}
		if tp != nil {
			row.Target.Vendor, row.Target.DeviceID = tp.Vendor, tp.Device
		}
		drv, origin, files, err := targetDriver(src, tp, aliases)
		row.Target.Driver, row.Target.Origin, row.Target.Modules = drv, origin, files
		sp := pciOf(src, s.PCI)
		switch {
		case s.PCI != "" && t.PCI != "" && sameDevice(sp, tp):
			row.Action, row.Why = Keep, "the same controller at the same PCI address"
		case s.PCI == "" || t.PCI == "":
			row.Action, row.Why = Keep, "no PCI controller recorded: assumed unchanged"
		case err != nil:
			row.Action, row.Why, row.Fix = Refuse, err.Error(), "the bundle's modules tree is incomplete: capture again"
			p.refuse("driver", fmt.Sprintf("disk %s → %s: %v", s.Name, t.Name, err), row.Fix)
		case origin == OriginNone || (drv == "" && aliases != nil):
			row.Action = Refuse
			row.Why = fmt.Sprintf("the image kernel %s has no driver for the disk controller %s (%s)", releaseOf(aliases), t.PCI, devDesc(tp))
			row.Fix = noDriverFix(aliases, tp, "disk controller")
			p.refuse("driver", fmt.Sprintf("disk %s: %s", s.Name, row.Why), row.Fix)
		case staleAt(src, tp):
			// The resumed kernel keeps its own device at that address (a
			// rescan skips it), and removing a virtio device whose restore
			// failed corrupts the kernel's heap.
			old := pciOf(src, t.PCI)
			row.Action = Refuse
			row.Why = fmt.Sprintf("the disk controller %s (%s) sits at the address of the source's %s %s, which the resumed kernel keeps and cannot let go of",
				t.PCI, devDesc(tp), devDesc(old), old.Driver)
			row.Fix = "put the disk controller in another PCI slot"
			row.Target.Stale = true
			p.refuse("slot", fmt.Sprintf("disk %s: %s", s.Name, row.Why), row.Fix)
		case !s.Movable && !canRedirect(s, aliases):
			_, why := Movable(src, s)
			row.Action = Refuse
			row.Why = fmt.Sprintf("source disk %s moves from %s (%s) to %s (%s), and %s: a resumed kernel keeps the dead controller and hangs on that partition",
				s.Name, s.Driver, s.PCI, drv, t.PCI, strings.Join(orList(why, "the capture did not record it as movable"), "; "))
			row.Fix = "run `thaw prepare` on the source (root and swap reach the disk through device-mapper from its next boot), reboot it and capture again; or restore onto the same controller type at the same PCI address"
			switch {
			case !redirectDrivers[s.Driver]:
				row.Why += fmt.Sprintf(" (%s, which a driver pack's %s could send to the new disk, is proven only for a source disk on %s)", RedirectModule, RedirectModule, strings.Join(slices.Sorted(maps.Keys(redirectDrivers)), ", "))
			case aliases == nil || !aliases.FromPack(RedirectModule):
				p.PlainDisks = append(p.PlainDisks, s.Name)
				row.Fix += fmt.Sprintf("; or give the agent a driver pack for %s (thaw driverpack build --release %s --out DIR, then thaw.packs=URL): its %s sends the old disk's I/O to the new one", releaseOf(aliases), releaseOf(aliases), RedirectModule)
			}
			p.refuse("disk", row.Why, row.Fix)
		default:
			row.Action = Redirect
			row.Why = fmt.Sprintf("%s on %s (%s) → %s on %s (%s, %s); dm %s re-pointed by disk GUID %s",
				s.Name, s.Driver, s.PCI, t.Name, drv, t.PCI, origin, strings.Join(orList(row.Source.DM, "(none)"), ","), s.DiskGUID)
			keyring := KeyringCrypt(src, s)
			switch {
			case s.DiskGUID == "":
				row.Action, row.Why = Refuse, fmt.Sprintf("source disk %s has no GPT disk GUID: the resumed kernel could not find it in its new place", s.Name)
				row.Fix = "restore onto the same controller at the same PCI address"
				p.refuse("disk", row.Why, row.Fix)
			case len(keyring) > 0:
				row.Action = Refuse
				row.Why = fmt.Sprintf("source disk %s moves, and the dm-crypt device(s) %s sit directly on it with their key in the kernel keyring (LUKS2 opened by cryptsetup): their tables name only the key's description, the key left the keyring after the volume was opened, so no table can be loaded onto the disk's new place",
					s.Name, strings.Join(keyring, ", "))
				row.Fix = "restore onto the same disk controller at the same PCI address; or keep LUKS above LVM (the LUKS volume on a logical volume: only the LVs' linear tables move)"
				p.refuse(CheckCrypt, row.Why, row.Fix)
			case !s.Movable:
				_, why := Movable(src, s)
				row.Via = RedirectModule
				row.Why += fmt.Sprintf("; %s: %s sends its bios to %s (held from the resume until %s is found)", strings.Join(why, "; "), RedirectModule, t.Name, t.Name)
				p.redirect(s)
				addMods(append(files, PackFile(RedirectModule)))
			default:
				addMods(files)
			}
		}
		p.Devices = append(p.Devices, row)
	}
	p.nics(src, dst, aliases, addMods)
	p.Modules = mods
}

// RedirectModule is the driver pack's module that sends a moved disk's
// bios to its new place (boot/packbuild/redirect/thaw_redirect.c), for
// filesystems and swap on plain partitions.
const RedirectModule = "thaw_redirect"

// redirectDrivers are the source disk drivers whose stale queue lets
// thaw_redirect's bios through. virtio_blk's freeze leaves the queue
// quiesced, not frozen, so the block layer still calls the disk's
// submit_bio. SCSI disks (sd) are left pm_only by a resume that failed,
// and bio_queue_enter would wait on them for ever; other drivers are not
// tried.
var redirectDrivers = map[string]bool{"virtio_blk": true}

// canRedirect reports whether the pack's thaw_redirect can move source
// disk s.
func canRedirect(s manifest.Disk, aliases *Aliases) bool {
	return redirectDrivers[s.Driver] && s.Dev != "" && aliases != nil && aliases.FromPack(RedirectModule)
}

// Redirection is the pack's thaw_redirect as the plan loads it: right after
// the resume, before kernel threads thaw, holding the bios of the stale
// disks named in Params until their new places are found.
type Redirection struct {
	Module string   `json:"module"`
	Disks  []string `json:"disks"` // the source disks' major:minor
	Params string   `json:"params"`
}

// redirect adds source disk s to the plan's thaw_redirect.
func (p *Plan) redirect(s manifest.Disk) {
	if p.Redirect == nil {
		p.Redirect = &Redirection{Module: RedirectModule}
	}
	p.Redirect.Disks = append(p.Redirect.Disks, s.Dev)
	p.Redirect.Params = "hold=" + strings.Join(p.Redirect.Disks, ",")
}

// staleAt reports whether the source had another device at the target
// device's PCI address.
func staleAt(src *manifest.Manifest, tp *manifest.PCIDevice) bool {
	if tp == nil || tp.Address == "" {
		return false
	}
	old := pciOf(src, tp.Address)
	return old != nil && !sameDevice(old, tp)
}

// devDesc names a PCI device by vendor:device, or by modalias.
func devDesc(d *manifest.PCIDevice) string {
	if d == nil {
		return "no PCI device"
	}
	if d.Vendor != "" {
		return d.Vendor + ":" + d.Device
	}
	return d.Modalias
}

func releaseOf(a *Aliases) string {
	if a == nil || a.Release == "" {
		return "(unknown)"
	}
	return a.Release
}

func orList(s []string, dflt string) []string {
	if len(s) == 0 {
		return []string{dflt}
	}
	return s
}

// nics pairs the source's NICs with this machine's: a NIC of the same
// model at the same address is kept; the others take the remaining NICs
// here in PCI address order.
func (p *Plan) nics(src, dst *manifest.Manifest, aliases *Aliases, addMods func([]string)) {
	var free []*manifest.PCIDevice
	taken := map[string]bool{}
	for _, n := range src.NICs {
		if sp, tp := pciOf(src, n.PCI), pciOf(dst, n.PCI); n.PCI != "" && sameDevice(sp, tp) {
			taken[n.PCI] = true
		}
	}
	for i := range dst.PCI {
		d := &dst.PCI[i]
		if kindOf(d.Class) == "nic" && !taken[d.Address] {
			free = append(free, d)
		}
	}
	sort.Slice(free, func(i, j int) bool { return free[i].Address < free[j].Address })
	for _, n := range src.NICs {
		if n.PCI == "" {
			continue // virtual links: bridges, bonds, tunnels
		}
		row := Device{Kind: "nic", Source: DeviceEnd{Name: n.Name, PCI: n.PCI, Driver: n.Driver, MAC: n.MAC, Addresses: n.Addresses, Routes: n.Routes}}
		sp := pciOf(src, n.PCI)
		if sp != nil {
			row.Source.Vendor, row.Source.DeviceID = sp.Vendor, sp.Device
		}
		if taken[n.PCI] {
			tp := pciOf(dst, n.PCI)
			row.Target = &DeviceEnd{PCI: n.PCI, Vendor: tp.Vendor, DeviceID: tp.Device, Driver: n.Driver, Origin: OriginLoaded}
			row.Action, row.Why = Keep, "the same NIC model at the same PCI address"
			p.Devices = append(p.Devices, row)
			continue
		}
		if len(free) == 0 {
			row.Action, row.Why = None, "this machine has no NIC left for it: the server will not have "+n.Name
			row.Fix = "add a NIC to this machine"
			p.Notes = append(p.Notes, fmt.Sprintf("NIC %s (%s): %s", n.Name, n.MAC, row.Why))
			p.Devices = append(p.Devices, row)
			continue
		}
		tp := free[0]
		free = free[1:]
		drv, origin, files, err := targetDriver(src, tp, aliases)
		row.Target = &DeviceEnd{PCI: tp.Address, Vendor: tp.Vendor, DeviceID: tp.Device, Driver: drv, Origin: origin, Modules: files,
			MAC: n.MAC, Addresses: n.Addresses, Routes: n.Routes}
		for _, tn := range dst.NICs {
			if tn.PCI == tp.Address {
				row.Target.Name = tn.Name
			}
		}
		switch {
		case err != nil:
			row.Action, row.Why, row.Fix = None, err.Error(), "the bundle's modules tree is incomplete: capture again"
		case drv == "" && aliases == nil:
			row.Action, row.Why = None, "the bundle carries no modules tree: the NIC's driver is unknown"
		case drv == "":
			row.Action = None
			row.Why = fmt.Sprintf("the image kernel %s has no driver for the NIC %s (%s): the server will have no network here", releaseOf(aliases), tp.Address, devDesc(tp))
			row.Fix = noDriverFix(aliases, tp, "NIC")
		case tp.Address == n.PCI:
			// The resumed kernel keeps its own device at that address and
			// would never see the new one; removing a stale virtio-net
			// crashes the kernel.
			row.Action = None
			row.Why = fmt.Sprintf("the new NIC (%s) sits at %s, the address of the source's %s, which the resumed kernel cannot let go of", devDesc(tp), tp.Address, n.Driver)
			row.Fix = "put the new NIC in another PCI slot"
			row.Target.Stale = true
		default:
			row.Action = Rebind
			row.Why = fmt.Sprintf("%s (%s, %s) → %s at %s (%s): takes the name %s, MAC %s and %s", n.Name, n.Driver, n.PCI, drv, tp.Address, origin, n.Name, n.MAC,
				strings.Join(orList(nonLinkLocal(n.Addresses), "no addresses"), ", "))
			addMods(files)
		}
		if row.Action == None {
			p.Notes = append(p.Notes, fmt.Sprintf("NIC %s (%s): %s", n.Name, n.MAC, row.Why))
		}
		p.Devices = append(p.Devices, row)
	}
}

// nonLinkLocal drops IPv6 link-local addresses (the kernel makes them).
func nonLinkLocal(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if !strings.HasPrefix(strings.ToLower(a), "fe80:") {
			out = append(out, a)
		}
	}
	return out
}
