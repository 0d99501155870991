package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
)

func (r *run) fetchOptions() bundle.FetchOptions {
	o := r.st.Fetch
	if o.Logf == nil {
		o.Logf = r.logf
	}
	return o
}

// damaged turns a chunk that kept failing its hash into a refusal.
func (r *run) damaged(err error) error {
	if !errors.Is(err, bundle.ErrDamaged) {
		return r.fail(err)
	}
	hint := "nothing was written; upload the bundle again or check the store's disk"
	if len(r.st.Wrote) > 0 {
		hint = "upload the bundle again or check the store's disk, then restore again: nothing resumable was written"
	}
	return r.refuse("the image is damaged", plan.CheckVerify, err.Error(), hint)
}

// verifyAll checks every chunk of every stream against the signed index
// before anything is written.
func verifyAll(ctx context.Context, r *run) error {
	br := r.st.Bundle
	r.rep.Begin("verify", "every chunk, before any write")
	var total, done int64
	for _, s := range br.Index.Streams {
		total += s.StoredSize()
	}
	for _, s := range br.Index.Streams {
		opt := r.fetchOptions()
		if i := slices.IndexFunc(br.Manifest.Disks, func(d manifest.Disk) bool { return d.Stream == s.Name }); i >= 0 {
			opt.Skip = r.st.skipWritten(i, nil) // a follow's pre-copy wrote (and checked) those
		}
		err := br.Fetch(ctx, s, 0, opt, func(_ int, c bundle.Chunk, _ []byte) error {
			done += c.Stored
			r.rep.Progress("verify", done, total)
			return nil
		})
		if err != nil {
			return r.damaged(err)
		}
	}
	r.st.Verified = true
	r.rep.Done("all chunks match the signed index")
	return nil
}

// writeDisks writes each disk stream onto its target in one pass: every
// chunk fetched once (several at once), checked against the signed index
// and written at its offset. The hibernation signature of an image
// carried inside a disk is held back (its page is written with the swap
// signature), so an interrupted restore is never resumable.
func writeDisks(ctx context.Context, r *run) error {
	st := r.st
	m := st.Bundle.Manifest
	r.rep.Begin("write", fmt.Sprintf("%d disk(s)", len(st.devs)))
	if err := r.disarm(); err != nil {
		return r.fail(err)
	}
	st.Wrote = st.Targets
	for i, dev := range st.devs {
		res := DiskResult{Stream: m.Disks[i].Stream, Target: st.Targets[i], Bytes: m.Disks[i].Size}
		var hold *int64
		if m.Resume != nil && m.Resume.InDisk && m.Resume.Disk == i {
			hold = &m.Resume.HeaderOffset
		}
		held, err := r.writeDisk(ctx, dev, st.skipWritten(i, hold), hold, &res)
		if err != nil {
			return r.damaged(fmt.Errorf("writing %s: %w", dev.Ref, err))
		}
		if held != nil {
			st.held = held
		}
		st.Written = append(st.Written, res)
		kept := ""
		if st.follow != nil && st.follow.final {
			kept = fmt.Sprintf(", %d MiB already there from the pre-copy", res.KeptBytes>>20)
		}
		r.logf("%s → %s: %d MiB, %d MiB written, %d zero chunks (%s)%s", res.Stream, res.Target, res.Bytes>>20, res.WrittenBytes>>20, res.ZeroChunks, orNone(res.Zeroed), kept)
	}
	if st.precopyPass() {
		r.wrotePrecopy()
	}
	r.rep.Done(fmt.Sprintf("%d disk(s) written and synced", len(st.devs)))
	return nil
}

// disarm removes the hibernation signature that a target already holds
// where this restore puts its own (a previous restore's, complete or
// cut): before the first write, and synced. A power cut during this
// restore then leaves nothing that the image kernel would resume, not even
// an older image over half-written disks.
func (r *run) disarm() error {
	st := r.st
	m := st.Bundle.Manifest
	disarm := func(dev swapDev, off int64, ref string) error {
		removed, err := disarmAt(dev, off, ref)
		if removed {
			r.logf("%s held a resume signature at %d (a previous restore's): removed before writing", ref, off)
		}
		return err
	}
	if st.area != nil {
		if err := disarm(st.area, 0, st.area.Ref); err != nil {
			return err
		}
	}
	if m.Resume == nil || m.Resume.Disk < 0 || m.Resume.Disk >= len(st.devs) {
		return nil
	}
	dev := st.devs[m.Resume.Disk]
	if m.Resume.HeaderOffset < 0 || m.Resume.HeaderOffset+swsusp.PageSize > dev.Size {
		return nil
	}
	return disarm(dev, m.Resume.HeaderOffset, dev.Ref)
}

// disarmAt turns a hibernation signature at off back into the swap
// signature it replaced, synced, and reports whether there was one.
func disarmAt(dev swapDev, off int64, ref string) (bool, error) {
	pg := make([]byte, swsusp.PageSize)
	if _, err := dev.ReadAt(pg, off); err != nil {
		return false, fmt.Errorf("reading %s at %d for an old resume signature: %w", ref, off, err)
	}
	h := swsusp.ParseHeader(pg)
	if h.Sig != swsusp.SigHibernate {
		return false, nil
	}
	h.Sig = h.OrigSig
	h.Put(pg)
	if _, err := dev.WriteAt(pg, off); err != nil {
		return false, fmt.Errorf("removing the old resume signature of %s at %d: %w", ref, off, err)
	}
	if err := dev.Sync(); err != nil {
		return true, fmt.Errorf("%s: %w", ref, err)
	}
	return true, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// writeDisk copies one disk stream onto dev. Runs of zero chunks are made
// to read as zeros without writing them where the file or device can
// (blockdev.ZeroRange), else read and written only where not zero. If
// hold is set, the page at that byte offset is written with its swap
// signature instead of the hibernation one, and its real contents
// returned.
func (r *run) writeDisk(ctx context.Context, dev *blockdev.Dev, skip func(bundle.Chunk) bool, hold *int64, res *DiskResult) ([]byte, error) {
	br := r.st.Bundle
	s := br.Index.Stream(res.Stream)
	var held []byte // only the worker of the chunk that holds the header sets it
	z := zeroer{dev: dev, logf: r.logf, res: res}
	opt := r.fetchOptions()
	opt.Skip = skip
	// Each checked chunk is written at its offset by the worker that
	// fetched it: several writes at once.
	opt.Sink = func(_ int, c bundle.Chunk, data []byte) error {
		if hold != nil && *hold >= c.Off && *hold+swsusp.PageSize <= c.Off+c.Len {
			pg := data[*hold-c.Off : *hold-c.Off+swsusp.PageSize]
			held = bytes.Clone(pg)
			if h := swsusp.ParseHeader(pg); h.Sig == swsusp.SigHibernate {
				h.Sig = h.OrigSig
				h.Put(pg)
			}
		}
		_, err := dev.WriteAt(data, c.Off)
		return err
	}
	err := br.Fetch(ctx, s, 0, opt, func(_ int, c bundle.Chunk, _ []byte) error {
		r.rep.Progress(res.Target, c.Off, s.Size)
		if skip != nil && skip(c) {
			res.KeptBytes += c.Len
			return z.flush()
		}
		if c.Zero {
			res.ZeroChunks++
			return z.add(c.Off, c.Len)
		}
		res.WrittenBytes += c.Len
		return z.flush()
	})
	if err == nil {
		err = z.flush()
	}
	if err != nil {
		return nil, err
	}
	if err := dev.Sync(); err != nil {
		return nil, err
	}
	r.rep.Progress(res.Target, s.Size, s.Size)
	return held, nil
}

// zeroer makes runs of zero chunks read as zeros.
type zeroer struct {
	dev       *blockdev.Dev
	logf      func(string, ...any)
	res       *DiskResult
	at, n     int64
	noOffload bool
	buf       []byte
}

func (z *zeroer) add(off, n int64) error {
	if z.n > 0 && z.at+z.n == off {
		z.n += n
		return nil
	}
	if err := z.flush(); err != nil {
		return err
	}
	z.at, z.n = off, n
	return nil
}

func (z *zeroer) flush() error {
	if z.n == 0 {
		return nil
	}
	at, n := z.at, z.n
	z.n = 0
	if !z.noOffload {
		err := z.dev.ZeroRange(at, n)
		if err == nil {
			z.res.Zeroed = "offload"
			return nil
		}
		if !errors.Is(err, blockdev.ErrNoZeroOffload) {
			return err
		}
		z.noOffload = true
		z.logf("%v: zero chunks are read, and written only where not zero", err)
	}
	z.res.Zeroed = "checked"
	if z.buf == nil {
		z.buf = make([]byte, 1<<20)
	}
	for done := int64(0); done < n; {
		b := z.buf[:min(int64(len(z.buf)), n-done)]
		if _, err := z.dev.ReadAt(b, at+done); err != nil && err != io.EOF {
			return fmt.Errorf("read at byte %d: %w", at+done, err)
		}
		if !bundle.IsZero(b) {
			clear(b)
			if _, err := z.dev.WriteAt(b, at+done); err != nil {
				return fmt.Errorf("writing zeros at byte %d: %w", at+done, err)
			}
			z.res.WrittenBytes += int64(len(b))
		}
		done += int64(len(b))
	}
	return nil
}
