package restore

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/bootparam"
)

// makePlan checks the bundle against this machine and the operator's
// choices. Every refusal but a damaged chunk comes from here, before
// anything is written; then the target disks are opened for writing (the
// verify stage, when it runs, still comes before the first write).
func makePlan(ctx context.Context, r *run) error {
	st := r.st
	m := st.Bundle.Manifest
	r.rep.Begin("plan", fmt.Sprintf("source %s (%s) against this machine", orAuto(m.Hostname), m.Kernel.Release))
	var pl *plan.Plan
	if st.Machine != nil {
		aliases, err := Aliases(st.Bundle)
		if err != nil {
			return r.fail(err)
		}
		opt := plan.Options{Disks: st.Disks}
		if st.Target == nil && st.Mode != Restore {
			// Another machine's disks cannot be read from here: with a
			// saved profile, the disks named are the consent and the
			// others count as holding data.
			opt.HasData = r.env.Machine.HasData
			if st.follow != nil && st.follow.final {
				// What the pre-copy wrote is this restore's own.
				opt.HasData = func(name string) bool {
					return !slices.Contains(st.Targets, "/dev/"+name) && r.env.Machine.HasData(name)
				}
			}
		}
		pl = plan.Make(m, st.Machine, aliases, opt)
		if st.Packs != "" && aliases != nil && needsPack(pl) {
			pack, refusal := r.loadPack(ctx, aliases)
			if pack != nil {
				opt.Pack, st.Pack = pack, pack
				pl = plan.Make(m, st.Machine, aliases, opt)
			}
			if refusal != nil {
				pl.Refusals = append(pl.Refusals, *refusal)
			}
		}
		if st.Mode == Restore {
			// thaw restore writes the files and devices it was given:
			// the disk checks are its own (checkTargets).
			pl.Refusals = slices.DeleteFunc(pl.Refusals, func(r plan.Refusal) bool { return r.Check == plan.CheckDisk })
		}
	} else {
		pl = &plan.Plan{}
	}
	st.Plan = pl
	if st.Mode == Agent {
		// Two lines a row, within 80 columns; bridges and other devices
		// no driver claims are left to the plan in the remote log.
		for _, d := range pl.Drivers {
			if d.Kind == "other" && d.Module == "" {
				continue
			}
			r.logf("driver %s %-5s → %s", d.PCI, d.Kind, DriverText(d))
			r.logf("         %s", d.Modalias)
		}
		for _, d := range pl.Devices {
			where, what := DeviceLine(d)
			r.logf("device %s", where)
			r.logf("         %s", what)
		}
		for _, n := range pl.Notes {
			r.logf("note: %s", n)
		}
		if r.env.Log != nil {
			r.env.Log.Record("probe", st.Machine)
			r.env.Log.Record("plan", pl)
		}
		st.Release = releaseList(pl)
		if m.Mailbox != nil && len(pl.Refusals) == 0 {
			if err := r.makePayload(pl); err != nil {
				pl.Refusals = append(pl.Refusals, plan.Refusal{Check: plan.CheckMailbox, Reason: err.Error(), Hint: "capture the server again with this version of thaw"})
			} else {
				r.logf("mailbox: device plan and %d module(s), %d KiB of the capture's %d KiB", len(pl.Modules), len(st.Payload)>>10, len(m.Mailbox.PFNs)*4)
			}
		}
	}
	st.Path = r.path()
	st.Replay = st.Mode == Agent && !pl.SameMap
	pl.Refusals = append(pl.Refusals, r.bundleChecks()...)
	if st.Mode == Restore {
		pl.Refusals = append(pl.Refusals, r.checkTargets()...)
	}
	if len(pl.Refusals) == 0 && !st.precopyPass() {
		pl.Refusals = append(pl.Refusals, r.openArea()...)
	}
	var targets []string
	if st.Mode == Agent {
		for _, d := range pl.Disks {
			targets = append(targets, "/dev/"+d.Target)
		}
	} else if st.Mode == Restore {
		targets = st.Disks
	}
	if st.follow != nil && st.follow.final && len(pl.Refusals) == 0 && !slices.Equal(targets, st.Targets) {
		pl.Refusals = append(pl.Refusals, plan.Refusal{Check: plan.CheckDisk,
			Reason: fmt.Sprintf("the capture's bundle puts its disks on %s, its pre-copy on %s", strings.Join(targets, ","), strings.Join(st.Targets, ",")),
			Hint:   "name the target disks (thaw.disk=) and follow the capture again"})
	}
	pl.OK = len(pl.Refusals) == 0
	if !pl.OK {
		r.rep.Fail(fmt.Sprintf("%d refusal(s)", len(pl.Refusals)))
		return &plan.Refused{Title: "this machine cannot take the image", Refusals: pl.Refusals}
	}
	st.Targets = targets
	how := st.Path
	if st.Replay {
		how += ", memory map differs: stage 2 with the source's e820"
	}
	if st.Mode == Plan || st.DryRun {
		r.rep.Done(fmt.Sprintf("ok: disks %s, resume %s", strings.Join(st.Targets, ","), how))
		return nil
	}
	if st.devs == nil { // (the second pass of a follow has them open)
		if err := r.openTargets(); err != nil {
			return r.fail(err)
		}
	}
	verify := "each chunk checked as it is written"
	if st.verifyFirst() {
		verify = "every chunk checked before the first write"
	}
	r.rep.Done(fmt.Sprintf("ok: disks %s, resume %s; %s", strings.Join(st.Targets, ","), how, verify))
	return nil
}

// path is the handover: thaw restore's --direct or the area; the
// agent's thaw.resume=, direct by default.
func (r *run) path() string {
	st := r.st
	switch {
	case st.Mode == Restore && st.Direct:
		return PathDirect
	case st.Mode == Restore:
		return PathArea
	case st.Mode == Plan:
		return st.Plan.Resume
	case st.Resume == bootparam.ResumeKexec:
		return PathKexec
	}
	return PathDirect
}

// bundleChecks are the checks of the bundle against the chosen path that
// the plan itself does not make.
func (r *run) bundleChecks() []plan.Refusal {
	st := r.st
	br, m := st.Bundle, st.Bundle.Manifest
	var rs []plan.Refusal
	if st.precopyPass() {
		// The disks only: the memory image and its handover are
		// checked on the capture's bundle.
		for _, d := range m.Disks {
			if br.Index.Stream(d.Stream) == nil {
				rs = append(rs, plan.Refusal{Check: plan.CheckImage, Reason: "the pre-copy names no stream for disk " + d.Name, Hint: "capture again with thaw capture --precopy"})
			}
		}
		return rs
	}
	if m.Image == nil || br.Index.Stream(m.Image.Stream) == nil {
		rs = append(rs, plan.Refusal{Check: plan.CheckImage, Reason: "the bundle carries no memory image", Hint: "restore a bundle made by thaw capture or thaw export"})
	}
	for _, d := range m.Disks {
		if br.Index.Stream(d.Stream) == nil {
			rs = append(rs, plan.Refusal{Check: plan.CheckImage, Reason: "the bundle names no stream for disk " + d.Name, Hint: "the bundle is incomplete: capture or export it again"})
		}
	}
	if st.Mode == Plan {
		return rs
	}
	switch st.Path {
	case PathDirect:
		if err := r.env.Snapshot.Available(); err != nil {
			hint := "use thaw.resume=kexec with thaw.area="
			if st.Mode == Restore {
				hint = "leave out --direct: the resume image goes to the restored swap (or --resume) and the image kernel resumes it"
			}
			rs = append(rs, plan.Refusal{Check: plan.CheckResume, Reason: err.Error(), Hint: hint})
		}
	case PathKexec:
		for _, f := range []string{"vmlinuz", "initrd"} {
			if br.Index.Stream(f) == nil {
				rs = append(rs, plan.Refusal{Check: plan.CheckResume, Reason: "the bundle carries no " + f + " of the image kernel", Hint: "use thaw.resume=direct"})
			}
		}
		if st.Area == "" && m.Resume == nil {
			rs = append(rs, plan.Refusal{Check: plan.CheckResume, Reason: "thaw.resume=kexec needs a resume area for the image: the bundle reserved none in the server's own swap", Hint: "add thaw.area=DEV: a swap-formatted partition that is not on a thaw.disk= target, or use thaw.resume=direct"})
		}
		if st.Area == "" {
			rs = append(rs, ownSwapCheck(m, "add thaw.area=DEV: a swap-formatted partition that is not on a thaw.disk= target, or use thaw.resume=direct")...)
		}
	case PathArea:
		if st.Area == "" && m.Resume == nil {
			rs = append(rs, plan.Refusal{Check: plan.CheckResume, Reason: "the bundle reserved no room for the image in the server's own swap (no swap in use on a captured disk, or a capture older than this thaw)", Hint: "give --resume with a swap-formatted partition that is not a swap of the image"})
		}
		if st.Area == "" {
			rs = append(rs, ownSwapCheck(m, "give --resume with a swap-formatted partition that is not a swap of the image")...)
		}
	}
	if st.Replay && len(m.NonRAM) == 0 {
		r.logf("warning: the bundle carries no firmware ranges; after the memory-map replay the resumed kernel may find other ACPI tables")
	}
	return rs
}

// checkTargets checks thaw restore's --disk places: one per disk of the
// bundle, each a whole disk at least as large as the source's, none
// twice. It opens them (for writing, writing nothing).
func (r *run) checkTargets() []plan.Refusal {
	st := r.st
	m := st.Bundle.Manifest
	if len(st.Disks) != len(m.Disks) {
		return []plan.Refusal{{Check: plan.CheckDisk, Reason: fmt.Sprintf("the bundle carries %d disk(s) but %d --disk were given", len(m.Disks), len(st.Disks)), Hint: "give one --disk per disk of the bundle, in its order"}}
	}
	var rs []plan.Refusal
	for i, d := range st.Disks {
		if slices.Index(st.Disks, d) < i {
			rs = append(rs, plan.Refusal{Check: plan.CheckDisk, Reason: fmt.Sprintf("--disk %s given twice", d), Hint: "give each target disk once"})
			continue
		}
		dev, err := r.env.Disks.Open(d)
		if err != nil {
			rs = append(rs, plan.Refusal{Check: plan.CheckDisk, Reason: err.Error(), Hint: "give a disk or disk image this user can write"})
			continue
		}
		size, offset := dev.Size, dev.Offset
		dev.Close()
		src := m.Disks[i]
		switch {
		case offset != 0:
			rs = append(rs, plan.Refusal{Check: plan.CheckDisk, Reason: fmt.Sprintf("--disk %s is a partition", d), Hint: "give whole disks"})
		case size < src.Size:
			rs = append(rs, plan.Refusal{Check: plan.CheckDisk, Reason: fmt.Sprintf("--disk %s holds %d MiB, the source disk %s held %d MiB: too small", d, size>>20, src.Name, src.Size>>20), Hint: "give a disk at least as large"})
		}
	}
	return rs
}

// openArea opens and checks the resume area, if one is named.
func (r *run) openArea() []plan.Refusal {
	st := r.st
	if st.Area == "" || (st.Path != PathKexec && st.Path != PathArea) {
		return nil
	}
	ref := st.Area
	disks := st.Disks
	if st.Mode == Agent {
		ref = "/dev/" + st.Area
		disks = nil
		for _, d := range st.Plan.Disks {
			disks = append(disks, "/dev/"+d.Target)
		}
	}
	area, err := OpenResumeArea(r.env.Disks, ref, disks, st.Bundle.Manifest)
	if err != nil {
		hint := "--resume must name a swap-formatted partition (DEV or PATH#N) that is not on a --disk target and not a swap of the image"
		if st.Mode == Agent {
			hint = "thaw.area= must name a swap-formatted partition that is not on a thaw.disk= target and not a swap of the image"
		}
		return []plan.Refusal{{Check: plan.CheckResume, Reason: err.Error(), Hint: hint}}
	}
	st.area = area
	st.onClose(func() { area.Close() })
	return nil
}

// openTargets opens the target disks for writing (nothing is written
// yet).
func (r *run) openTargets() error {
	st := r.st
	for _, t := range st.Targets {
		dev, err := r.env.Disks.Open(t)
		if err != nil {
			return err
		}
		st.devs = append(st.devs, dev)
		st.onClose(func() { dev.Close() })
	}
	return nil
}

// devHasData reports whether the first MiB of a disk holds anything; an
// unreadable one counts as holding data.
func devHasData(d *blockdev.Dev) bool {
	b := make([]byte, min(1<<20, d.Size))
	n, err := d.ReadAt(b, 0)
	if err != nil && err != io.EOF && n == 0 {
		return true
	}
	return !bundle.IsZero(b[:n])
}

// makePayload encodes the device plan and the image kernel's modules it
// names for the image's mailbox.
func (r *run) makePayload(pl *plan.Plan) error {
	br := r.st.Bundle
	var mods io.Reader
	if slices.ContainsFunc(pl.Modules, func(f string) bool { return !plan.IsPackFile(f) }) {
		sr, err := br.OpenStream("modules")
		if err != nil {
			return err
		}
		mods = sr
	}
	b, err := pl.Payload(br.Manifest, mods, r.st.Pack)
	if err != nil {
		return err
	}
	r.st.Payload = b
	return nil
}

// Aliases reads the image kernel's modalias table from the bundle's
// modules tree; nil when the bundle carries none.
func Aliases(br *bundle.Reader) (*plan.Aliases, error) {
	if br.Index.Stream("modules") == nil {
		return nil, nil
	}
	sr, err := br.OpenStream("modules")
	if err != nil {
		return nil, err
	}
	return plan.FromModulesTar(sr)
}

// DriverText renders a driver row's module for the console.
func DriverText(d plan.Driver) string {
	mod := d.Module
	switch {
	case mod == "":
		return "(none)"
	case d.Builtin:
		return mod + " (built in)"
	case d.SeenOnSource:
		return mod + " (bound to it on the source)"
	case d.Pack != "":
		return mod + " (pack " + d.Pack + ")"
	}
	return mod
}

// DeviceLine renders one row of the device plan for the console, in two
// lines that each fit 80 columns in most cases: the device and where it
// goes, then what is done and why.
func DeviceLine(d plan.Device) (where, what string) {
	src := d.Source.Name
	if d.Source.PCI != "" {
		src += " @" + d.Source.PCI
	}
	tgt := "—"
	if d.Target != nil {
		tgt = d.Target.PCI
		if d.Target.Name != "" {
			tgt = d.Target.Name + " @" + d.Target.PCI
		}
		if d.Target.Driver != "" {
			tgt += " " + d.Target.Driver + " (" + d.Target.Origin + ")"
		}
	}
	what = strings.ToUpper(d.Action) + ": " + d.Why
	if d.Fix != "" {
		what += "; fix: " + d.Fix
	}
	return fmt.Sprintf("%-4s %s → %s", d.Kind, src, tgt), what
}
