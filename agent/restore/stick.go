package restore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/netfetch/bootparam"
)

// Where the agent mounts the thaw stick's partitions, read-only.
const (
	StickDir    = "/run/thaw/stick"
	StickESPDir = "/run/thaw/stick-esp"
)

// stickWait is how long the agent waits for the stick to show up: USB
// disks appear some seconds after their controller's driver loads.
const stickWait = 30 * time.Second

// needsStick: thaw.image=, thaw.kernel= or thaw.identity= names a file on
// the stick.
func needsStick(r *run) bool {
	if r.st.Mode != Agent || r.st.Params == nil {
		return false
	}
	for _, ref := range []string{r.st.Params.Image, r.st.Params.Kernel, r.st.Params.Identity, r.st.Params.Packs} {
		if strings.HasPrefix(ref, bootparam.SchemeUSB) ||
			strings.HasPrefix(ref, bootparam.SchemeFile+StickDir+"/") || strings.HasPrefix(ref, bootparam.SchemeFile+StickESPDir+"/") {
			return true
		}
	}
	return false
}

// mountStick finds the thaw stick and mounts it read-only; usb:NAME
// becomes the file NAME on its data partition.
func mountStick(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("stick", "the thaw stick's data partition ("+stick.DataLabel+"), read-only")
	if r.env.Stick == nil {
		return r.fail(fmt.Errorf("no stick support"))
	}
	rescan := func() {
		if r.env.Drivers != nil {
			r.env.Drivers.Coldplug(func(string, ...any) {})
		}
	}
	disk, dev, err := r.env.Stick.Mount(ctx, rescan)
	if err != nil {
		return r.refuse("the thaw stick is not readable", plan.CheckImage, err.Error(),
			"attach the stick that thaw media usb wrote (its data partition is named "+stick.DataLabel+"), or boot with thaw.image=http://… to restore over the network")
	}
	st.StickDisk = disk
	st.onClose(r.env.Stick.Unmount)
	st.Image = stickRef(st.Image)
	st.Packs = stickRef(st.Packs)
	r.rep.Done(fmt.Sprintf("%s on %s (disk %s), read-only", dev, StickDir, disk))
	return nil
}

// stickRef turns usb:NAME[#pin] into file:StickDir/NAME[#pin].
func stickRef(ref string) string {
	if name, ok := strings.CutPrefix(ref, bootparam.SchemeUSB); ok {
		return bootparam.SchemeFile + StickDir + "/" + name
	}
	return ref
}

// needsNet: something is fetched or sent over the network.
func needsNet(p *bootparam.Params) bool {
	if p == nil {
		return true
	}
	return !bootparam.IsLocal(p.Image) || p.Log != "" || (p.Kernel != "" && !bootparam.IsLocal(p.Kernel)) ||
		(p.Identity != "" && !bootparam.IsLocal(p.Identity))
}

// StickLogName is the name of the log file for outcome ("refused",
// "failed", "handed-over", "stage1") when the stick is mounted, else "".
func StickLogName(st *State, outcome string) string {
	if st == nil || st.StickDisk == "" || st.Transcript == nil {
		return ""
	}
	image := st.Image
	if st.Params != nil {
		image = st.Params.Image
	}
	image, _, _ = strings.Cut(image, "#")
	return stick.LogName(time.Now(), image, outcome)
}

// SaveStickLog writes the console's lines so far (Config.Transcript) as
// thaw-logs/name on the stick, when the stick is mounted, and returns the
// file's path there ("" when there is no stick).
func SaveStickLog(env Env, st *State, name string) (string, error) {
	if name == "" || st == nil || st.StickDisk == "" || env.Stick == nil || st.Transcript == nil {
		return "", nil
	}
	path, err := env.Stick.WriteLog(name, st.Transcript())
	if err != nil {
		return "", err
	}
	st.StickLog = path
	return path, nil
}

// stickLog writes the log to the stick before a handover: the agent does
// not run after it.
func (r *run) stickLog(outcome string) {
	path, err := SaveStickLog(r.env, r.st, StickLogName(r.st, outcome))
	switch {
	case err != nil:
		r.logf("warning: the log could not be written to the stick: %v", err)
	case path != "":
		r.logf("log written to the stick: %s", path)
	}
}

// openLocal opens a file:PATH, or PATH.000, PATH.001, … when PATH is
// absent (a bundle split to fit a FAT filesystem).
func openLocal(path string) (Blob, error) {
	b, err := openFile(path)
	if !os.IsNotExist(err) {
		return b, err
	}
	parts, perr := openParts(path)
	if perr != nil {
		return nil, perr
	}
	if parts == nil {
		if dir := filepath.Dir(path); dir == StickDir {
			return nil, fmt.Errorf("%s is not on the stick: %w", filepath.Base(path), err)
		}
		return nil, err
	}
	return parts, nil
}
