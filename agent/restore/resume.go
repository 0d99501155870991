package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
)

// writeArea writes the resume image last and records the kernel
// arguments that resume it: into the area in the kernel's format, or, for
// an image carried inside a disk, its held header page back into that
// disk. With an area, an image carried inside a disk keeps its neutralized
// signature: one resumable copy only. What was written is read back and
// verified; if it does not verify, its signature is removed.
func writeArea(ctx context.Context, r *run) error {
	st := r.st
	where := "the disk that carries it"
	if st.area != nil {
		where = st.area.Ref
	}
	r.rep.Begin("area", "resume image → "+where)
	args, err := r.writeResume(ctx)
	if err != nil {
		return r.damaged(err)
	}
	st.ResumeArgs = args
	done := "written and verified, " + strings.Join(args, " ")
	if st.arm != nil {
		done += "; its signature is held back for stage 2"
	}
	r.rep.Done(done)
	return nil
}

// holdBack takes the verified image's signature off again when stage 2
// hands over: the image is for the source's memory map and firmware
// ranges, which only stage 2 sets up. The header page and its place on
// the disk go to stage 2 (armResume), which writes it last.
func (r *run) holdBack(area swapDev, headerPage int64) error {
	path, off, err := headerPlace(area, headerPage)
	if err != nil {
		return err
	}
	pg := make([]byte, swsusp.PageSize)
	if _, err := area.ReadAt(pg, headerPage*swsusp.PageSize); err != nil {
		return fmt.Errorf("reading the resume header back: %w", err)
	}
	if swsusp.ParseHeader(pg).Sig != swsusp.SigHibernate {
		return fmt.Errorf("the resume header on %s at %d holds no hibernation signature", path, off)
	}
	if _, err := disarmAt(area, headerPage*swsusp.PageSize, path); err != nil {
		return err
	}
	r.st.arm = &stage2.Arm{Path: path, Offset: off, Page: pg}
	return nil
}

// armResume writes the resume header that stage 1 held back, after
// checking that the page there is the one stage 1 left (its signature
// taken off), and reads it back.
func armResume(ctx context.Context, r *run) error {
	a := r.st.Stage2.Arm
	r.rep.Begin("arm", fmt.Sprintf("resume signature → %s at %d", a.Path, a.Offset))
	h := swsusp.ParseHeader(a.Page)
	if len(a.Page) != swsusp.PageSize || h.Sig != swsusp.SigHibernate {
		return r.refuse("stage 1 left no resume header to write", plan.CheckImage, "the first stage's state holds no hibernation header page", "restart the restore from stage 1")
	}
	want := bytes.Clone(a.Page)
	h.Sig = h.OrigSig
	h.Put(want)
	dev, err := r.env.Disks.Open(a.Path)
	if err != nil {
		return r.fail(err)
	}
	defer dev.Close()
	cur := make([]byte, swsusp.PageSize)
	if _, err := dev.ReadAt(cur, a.Offset); err != nil {
		return r.fail(fmt.Errorf("%s at %d: %w", a.Path, a.Offset, err))
	}
	if !bytes.Equal(cur, want) {
		return r.refuse("the resume area changed between the stages", plan.CheckImage,
			fmt.Sprintf("the page at %d of %s is not the header stage 1 wrote and held back", a.Offset, a.Path), "restart the restore from stage 1")
	}
	if _, err := dev.WriteAt(a.Page, a.Offset); err != nil {
		return r.damaged(fmt.Errorf("writing the resume signature to %s at %d: %w", a.Path, a.Offset, err))
	}
	if err := dev.Sync(); err != nil {
		return r.damaged(fmt.Errorf("%s: %w", a.Path, err))
	}
	if _, err := dev.ReadAt(cur, a.Offset); err != nil || !bytes.Equal(cur, a.Page) {
		neutralize(dev, a.Offset)
		return r.damaged(fmt.Errorf("the resume header on %s at %d does not read back as written (%v): its signature was removed", a.Path, a.Offset, err))
	}
	r.rep.Done("written and synced")
	return nil
}

// headerPlace is the device and byte offset in it of the area's header
// page: what stage 2 opens to write it.
func headerPlace(area swapDev, headerPage int64) (string, int64, error) {
	off := headerPage * swsusp.PageSize
	switch a := area.(type) {
	case *blockdev.Dev:
		return a.Path, a.Offset + off, nil
	case *segView:
		var at int64 = -1
		err := a.each(off, swsusp.PageSize, func(disk int64, lo, hi int) error {
			if lo == 0 && hi == swsusp.PageSize {
				at = disk
			}
			return nil
		})
		if err != nil || at < 0 {
			return "", 0, fmt.Errorf("the swap's header page is not in one piece on %s: %v", a.dev.Ref, err)
		}
		return a.dev.Path, a.dev.Offset + at, nil
	}
	return "", 0, fmt.Errorf("no place on a disk for the resume header of a %T", area)
}

// swapDev is where a resume image is written: an area of its own, a
// window of a restored disk, or a swap device mapped onto a restored disk
// through its segments.
type swapDev interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

func (r *run) writeResume(ctx context.Context) ([]string, error) {
	st := r.st
	m := st.Bundle.Manifest
	var (
		area       swapDev // the swap device the kernel resumes from
		size       int64
		ref        string
		headerPage int64
		resumeArg  string
		free       []swsusp.Extent
	)
	switch {
	case st.area != nil:
		area, size, ref, resumeArg = st.area, st.area.Size, st.area.Ref, st.area.ResumeArg()
	case m.Resume == nil:
		return nil, errors.New("the bundle carries no resume area: give one")
	case len(m.Resume.Slots) > 0:
		// The server's own swap: the pages the capture reserved in it
		// (ownSwapCheck passed in the plan).
		rdev := st.devs[m.Resume.Disk]
		v, err := newSegView(rdev, m.Resume.Segments)
		if err != nil {
			return nil, err
		}
		area, size, ref, resumeArg = v, v.size, fmt.Sprintf("%s (on %s)", m.Resume.Device, rdev.Ref), m.Resume.Device
		for _, e := range m.Resume.Slots {
			free = append(free, swsusp.Extent{Start: e.Start, Count: e.Count})
		}
	default:
		rdev := st.devs[m.Resume.Disk]
		start, n := resumeWindow(m, rdev)
		// Swap map entries count pages from the start of the swap device:
		// the partition (resume=PARTUUID=…), not the disk.
		w, err := rdev.Window(start, n, fmt.Sprintf("%s (resume area)", rdev.Ref))
		if err != nil {
			return nil, err
		}
		area, size, ref = w, w.Size, w.Ref
		headerPage, resumeArg = (m.Resume.HeaderOffset-start)/swsusp.PageSize, resumeTarget(m)
	}
	if st.area == nil && m.Resume.InDisk {
		if st.held == nil || swsusp.ParseHeader(st.held).Sig != swsusp.SigHibernate {
			return nil, errors.New("the bundle's disk stream holds no hibernation signature at the resume header")
		}
		if _, err := area.WriteAt(st.held, headerPage*swsusp.PageSize); err != nil {
			return nil, fmt.Errorf("writing the resume header to %s: %w", ref, err)
		}
		if err := area.Sync(); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	} else if err := r.writeResumeImage(ctx, area, size, headerPage, free); err != nil {
		return nil, fmt.Errorf("writing the resume image to %s: %w", ref, err)
	}
	if err := checkResumeImage(area, size, headerPage, m); err != nil {
		neutralize(area, headerPage*swsusp.PageSize)
		return nil, fmt.Errorf("the resume image written does not verify, its signature was removed: %w", err)
	}
	if st.Replay {
		if err := r.holdBack(area, headerPage); err != nil {
			neutralize(area, headerPage*swsusp.PageSize)
			return nil, err
		}
	}
	args := []string{"resume=" + resumeArg}
	if headerPage != 0 {
		args = append(args, fmt.Sprintf("resume_offset=%d", headerPage))
	}
	return args, nil
}

// writeResumeImage stores the bundle's memory stream (with the device
// plan in its mailbox pages) in the area in the kernel's format,
// signature last; free, if set, are the only pages it may use.
func (r *run) writeResumeImage(ctx context.Context, area swapDev, size, headerPage int64, free []swsusp.Extent) error {
	sr, closeFn, err := r.memoryImage(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	w, err := swsusp.NewWriter(area, size, headerPage, swsusp.WriterOptions{Compression: swsusp.CompressLZO, Free: free})
	if err != nil {
		return err
	}
	_, err = w.WriteStream(sr)
	return err
}

// memoryImage is the bundle's memory stream, fetched ahead and checked
// chunk by chunk, with the payload written into the mailbox pages.
func (r *run) memoryImage(ctx context.Context) (io.Reader, func(), error) {
	br := r.st.Bundle
	m := br.Manifest
	ar, err := br.OpenStreamAhead(ctx, m.Image.Stream, r.fetchOptions())
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { ar.Close() }
	if r.st.Payload == nil || m.Mailbox == nil {
		return ar, closeFn, nil
	}
	nonce, err := plan.Nonce(m)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	inj, err := mailbox.NewInjector(ar, m.Mailbox.PFNs, nonce, r.st.Payload)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return inj, closeFn, nil
}

// checkResumeImage reads the resume image back and compares its counts
// with the manifest.
func checkResumeImage(area io.ReaderAt, size, headerPage int64, m *manifest.Manifest) error {
	rd, err := swsusp.NewReader(area, size, headerPage)
	if err != nil {
		return err
	}
	rep, err := rd.Verify()
	if err != nil {
		return err
	}
	if m.Image != nil && (rep.DataPages != m.Image.DataPages || rep.Info.Pages != m.Image.Pages) {
		return fmt.Errorf("%d data pages of %d, the manifest says %d of %d", rep.DataPages, rep.Info.Pages, m.Image.DataPages, m.Image.Pages)
	}
	return nil
}

// neutralize removes the signature of an image that did not verify; a
// failure leaves nothing worse than the image was.
func neutralize(dev swapDev, off int64) { disarmAt(dev, off, "the resume area") }

// OpenResumeArea opens a resume area and checks it: a swap area, on no
// target disk, and not a swap the image uses.
func OpenResumeArea(disks Disks, ref string, targets []string, m *manifest.Manifest) (*blockdev.Dev, error) {
	path := ref
	if i := strings.LastIndexByte(ref, '#'); i > 0 {
		path = ref[:i]
	}
	// A partition device (/dev/sdb2) is opened as its disk's GPT partition
	// (/dev/sdb#2): its disk is checked against the targets, and its
	// PARTUUID names it to the image kernel.
	if disk, n, ok := partitionOf(path); ok {
		path, ref = disk, fmt.Sprintf("%s#%d", disk, n)
	}
	for _, d := range targets {
		if sameFile(d, path) {
			return nil, fmt.Errorf("the resume area %s lies on target disk %s, which the restore overwrites", ref, d)
		}
	}
	dev, err := disks.Open(ref)
	if err != nil {
		return nil, err
	}
	page := make([]byte, swsusp.PageSize)
	if _, err := dev.ReadAt(page, 0); err != nil {
		dev.Close()
		return nil, fmt.Errorf("resume area %s: %w", ref, err)
	}
	if h := swsusp.ParseHeader(page); h.Sig != swsusp.SigSwap2 && h.Sig != swsusp.SigSwap1 && h.Sig != swsusp.SigHibernate {
		dev.Close()
		return nil, fmt.Errorf("resume area %s holds no swap area (signature %q): run mkswap on it first", ref, h.Sig)
	}
	if dev.ResumeArg() == "" {
		dev.Close()
		return nil, fmt.Errorf("resume area %s has neither a PARTUUID nor a swap UUID to name it by to the image kernel: run mkswap on it (it sets a UUID), or give a GPT partition", ref)
	}
	for _, d := range m.Disks {
		for _, p := range d.Partitions {
			if dev.PartUUID != "" && p.PartUUID == dev.PartUUID {
				for _, s := range m.Swaps {
					if s.Path == "/dev/"+partName(d.Name, p.Number) {
						dev.Close()
						return nil, fmt.Errorf("resume area %s (PARTUUID %s) is %s, a swap the image uses: its pages would be overwritten", ref, dev.PartUUID, s.Path)
					}
				}
			}
		}
	}
	return dev, nil
}

// partitionOf reports the disk and number of a partition block device.
func partitionOf(path string) (disk string, n int, ok bool) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", 0, false
	}
	st, err := os.Stat(real)
	if err != nil || st.Mode()&os.ModeDevice == 0 {
		return "", 0, false
	}
	sys := "/sys/class/block/" + filepath.Base(real)
	b, err := os.ReadFile(sys + "/partition")
	if err != nil {
		return "", 0, false
	}
	if n, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return "", 0, false
	}
	link, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return "", 0, false
	}
	return "/dev/" + filepath.Base(filepath.Dir(link)), n, true
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func partName(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// resumeWindow is the swap area (partition, or the whole disk) holding
// the resume header.
func resumeWindow(m *manifest.Manifest, dev *blockdev.Dev) (start, size int64) {
	d := m.Disks[m.Resume.Disk]
	for _, p := range d.Partitions {
		if p.Number == m.Resume.Partition {
			return p.Start, p.Size
		}
	}
	return 0, dev.Size
}

func resumeTarget(m *manifest.Manifest) string {
	if m.Resume.PartUUID != "" {
		return "PARTUUID=" + m.Resume.PartUUID
	}
	return "/dev/" + m.Disks[m.Resume.Disk].Name
}

// ownSwapCheck checks the room a capture reserved for the image in the
// server's own swap, before anything is written: the swap lies on a disk
// of the bundle, its segments inside that disk, the reserved pages inside
// the swap, and there are enough of them for the image in the kernel's
// format at its worst (a capture that found too few free pages records
// what it got).
func ownSwapCheck(m *manifest.Manifest, hint string) []plan.Refusal {
	r := m.Resume
	if r == nil || len(r.Slots) == 0 || m.Image == nil {
		return nil
	}
	refuse := func(f string, a ...any) []plan.Refusal {
		return []plan.Refusal{{Check: plan.CheckResume, Reason: "the server's own swap " + r.Device + ": " + fmt.Sprintf(f, a...), Hint: hint}}
	}
	if r.Disk < 0 || r.Disk >= len(m.Disks) {
		return refuse("it lies on disk %d, the bundle carries %d", r.Disk, len(m.Disks))
	}
	var size int64
	for i, s := range r.Segments {
		if s.Start != size || s.Length <= 0 || s.DiskOffset < 0 || s.DiskOffset+s.Length > m.Disks[r.Disk].Size {
			return refuse("segment %d (bytes %d+%d at disk byte %d) is not inside disk %s", i, s.Start, s.Length, s.DiskOffset, m.Disks[r.Disk].Name)
		}
		size += s.Length
	}
	var have uint64
	for _, e := range r.Slots {
		if e.Start == 0 || e.Count == 0 || (e.Start+e.Count)*swsusp.PageSize > uint64(size) {
			return refuse("reserved pages %d+%d lie outside its %d pages", e.Start, e.Count, size/swsusp.PageSize)
		}
		have += e.Count
	}
	if need := swsusp.NeedPages(m.Image.Pages, swsusp.CompressLZO); int64(have) < need {
		return refuse("the capture reserved %d pages (%d MiB), the image may need %d (%d MiB)", have, have*swsusp.PageSize>>20, need, need*swsusp.PageSize>>20)
	}
	return nil
}

// segView is a swap device laid out on a disk in segments (a partition,
// or an LVM LV's linear table): its bytes, read and written at the
// disk's offsets.
type segView struct {
	dev  *blockdev.Dev
	segs []manifest.Segment
	size int64
}

func newSegView(dev *blockdev.Dev, segs []manifest.Segment) (*segView, error) {
	v := &segView{dev: dev, segs: segs}
	for i, s := range segs {
		if s.Start != v.size || s.Length <= 0 || s.DiskOffset < 0 || s.DiskOffset+s.Length > dev.Size {
			return nil, fmt.Errorf("the swap's segment %d (bytes %d+%d at disk byte %d) does not fit %s (%d bytes)", i, s.Start, s.Length, s.DiskOffset, dev.Ref, dev.Size)
		}
		v.size += s.Length
	}
	if v.size == 0 {
		return nil, errors.New("the swap has no segments")
	}
	return v, nil
}

// each calls f for the pieces of [off, off+n) with their disk offsets.
func (v *segView) each(off int64, n int, f func(disk int64, lo, hi int) error) error {
	if off < 0 || off+int64(n) > v.size {
		return fmt.Errorf("bytes %d+%d outside the swap's %d bytes", off, n, v.size)
	}
	done := 0
	for _, s := range v.segs {
		if done == n {
			break
		}
		at := off + int64(done)
		if at < s.Start || at >= s.Start+s.Length {
			continue
		}
		k := int(min(int64(n-done), s.Start+s.Length-at))
		if err := f(s.DiskOffset+at-s.Start, done, done+k); err != nil {
			return err
		}
		done += k
	}
	return nil
}

func (v *segView) ReadAt(p []byte, off int64) (int, error) {
	if off >= v.size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > v.size-off {
		p, short = p[:v.size-off], true
	}
	err := v.each(off, len(p), func(disk int64, lo, hi int) error {
		_, err := v.dev.ReadAt(p[lo:hi], disk)
		return err
	})
	if err != nil {
		return 0, err
	}
	if short {
		return len(p), io.EOF
	}
	return len(p), nil
}

func (v *segView) WriteAt(p []byte, off int64) (int, error) {
	err := v.each(off, len(p), func(disk int64, lo, hi int) error {
		_, err := v.dev.WriteAt(p[lo:hi], disk)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (v *segView) Sync() error { return v.dev.Sync() }
