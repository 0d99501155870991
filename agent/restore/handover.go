package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/kexec"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// handover gives the machine to the image: stage 2 first when the memory
// maps differ, then kexec into the image kernel or this kernel's
// /dev/snapshot.
func handover(ctx context.Context, r *run) error {
	st := r.st
	switch {
	case st.Replay:
		return r.kexecStage2()
	case st.Path == PathKexec:
		return r.kexecImage()
	}
	return r.direct(ctx)
}

// direct hands the memory image to this kernel, which jumps into it.
func (r *run) direct(ctx context.Context) error {
	st := r.st
	r.rep.Begin("restore", "memory image → /dev/snapshot")
	r.logf("timing: %s", st.Timing())
	sr, closeImage, err := r.memoryImage(ctx)
	if err != nil {
		return r.fail(err)
	}
	if r.env.Log != nil {
		r.env.Log.Flush()
	}
	err = r.env.Snapshot.Restore(sr, st.Bundle.Manifest.Image.Platform, r.logf, func() {
		// Nothing of this process may run while it freezes itself.
		closeImage()
		r.stickLog("handed-over")
		if r.env.Log != nil {
			r.env.Log.Stop()
		}
		st.Close()
		httpra.CloseIdleConnections()
		// The devices the image kernel probes afresh are let go now,
		// quiesced and powered, not put to sleep by this kernel.
		for _, addr := range st.Release {
			drv, err := r.env.Drivers.Release(addr)
			switch {
			case err != nil:
				r.logf("warning: %v", err)
			case drv != "":
				r.logf("released %s from %s for the image kernel's own driver", addr, drv)
			}
		}
		// The fetch's connections end in goroutines of their own once
		// closed: let them finish, so that none is runnable when the
		// freezer stops this process's threads.
		n := settle(3 * time.Second)
		r.logf("%d goroutine(s) left; freezing", n)
	})
	closeImage()
	return r.damaged(fmt.Errorf("direct restore: %w", err))
}

// settle waits, at most max, until the number of goroutines has not
// changed for 200 ms, and returns it.
func settle(max time.Duration) int {
	n, since := runtime.NumGoroutine(), time.Now()
	for end := time.Now().Add(max); time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) >= 200*time.Millisecond {
			break
		}
	}
	return n
}

// ImageCmdline is the source's command line with the resume arguments
// replaced.
func ImageCmdline(src string, resumeArgs []string) string {
	var out []string
	for _, f := range strings.Fields(src) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "resume", "resume_offset", "noresume", "BOOT_IMAGE", "initrd":
			continue
		}
		out = append(out, f)
	}
	return strings.Join(append(out, resumeArgs...), " ")
}

// kexecImage boots the image kernel with its own initrd and resume=; the
// running kernel's memory map is the source's (same hardware, or stage 2).
func (r *run) kexecImage() error {
	st := r.st
	m := st.Bundle.Manifest
	r.rep.Begin("kexec", "image kernel "+m.Kernel.Release)
	dir, err := os.MkdirTemp("", "image")
	if err != nil {
		return r.fail(err)
	}
	img := kexec.Image{Cmdline: ImageCmdline(m.Kernel.Cmdline, st.ResumeArgs)}
	for _, f := range []struct {
		stream string
		dst    *string
	}{{"vmlinuz", &img.Kernel}, {"initrd", &img.Initrd}} {
		*f.dst = filepath.Join(dir, f.stream)
		if err := r.extractStream(f.stream, *f.dst); err != nil {
			return r.damaged(err)
		}
	}
	r.logf("cmdline: %s", img.Cmdline)
	if err := r.env.Kexec.Load(img); err != nil {
		return r.fail(err)
	}
	r.rep.Done("loaded; rebooting into it")
	r.logf("timing: %s", st.Timing())
	r.stickLog("handed-over")
	if r.env.Log != nil {
		r.env.Log.Flush()
	}
	return r.env.Kexec.Exec()
}

func (r *run) extractStream(name, dst string) error {
	sr, err := r.st.Bundle.OpenStream(name)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, sr); err != nil {
		f.Close()
		return fmt.Errorf("%s → %s: %w", name, dst, err)
	}
	return f.Close()
}

// kexecStage2 boots the agent again with the source's e820 table; the
// state carries what this stage decided and wrote.
func (r *run) kexecStage2() error {
	st := r.st
	r.rep.Begin("stage2", "agent kernel with the source's memory map")
	sum := sha256.Sum256(st.Bundle.IndexRaw)
	s2 := &stage2.State{Image: st.Params.Image, IndexSHA256: hex.EncodeToString(sum[:]), Disks: st.Targets,
		Resume: st.Path, ResumeArgs: st.ResumeArgs, Stage1: st.Times, Payload: st.Payload, Release: st.Release, Arm: st.arm}
	initrd, err := r.env.Stage2.Pack(s2)
	if err != nil {
		return r.fail(err)
	}
	if fi, err := os.Stat(initrd); err == nil {
		r.logf("stage 2 initramfs: %d MiB", fi.Size()>>20)
	}
	img := kexec.Image{Kernel: st.kernel, Initrd: initrd, Cmdline: WithStage2(st.Cmdline)}
	if err := r.env.Kexec.LoadWithE820(img, st.Bundle.Manifest.E820, r.logf); err != nil {
		return r.fail(err)
	}
	os.Remove(initrd)
	r.rep.Done("loaded; rebooting into stage 2")
	r.logf("timing: %s", st.Timing())
	r.stickLog("stage1")
	if r.env.Log != nil {
		r.env.Log.Flush()
	}
	return r.env.Kexec.Exec()
}

// WithStage2 adds thaw.stage=2 and iomem=relaxed to a kernel command
// line, before a "--" (after it, arguments go to init, not to the
// kernel's parameters). iomem=relaxed lets the firmware stage write the
// source's ranges typed ACPI, which the kernel claims and /dev/mem
// otherwise refuses (IO_STRICT_DEVMEM).
func WithStage2(cmdline string) string {
	add := " thaw.stage=2"
	if !slices.Contains(strings.Fields(cmdline), "iomem=relaxed") {
		add += " iomem=relaxed"
	}
	padded := " " + cmdline + " "
	if i := strings.Index(padded, " -- "); i >= 0 {
		return strings.TrimSpace(padded[:i] + add + padded[i:])
	}
	return strings.TrimSpace(cmdline) + add
}
