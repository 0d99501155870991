package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/snapshot"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

const restoreHelp = `
Writes a bundle onto this machine's disks so that the image kernel resumes
it. In order, and stopping at the first failure:

  1 open the bundle (a file or an http(s) URL) and verify its signature
    against --pubkey, the manifest's digest and the index
  2 check the target disks: one --disk per disk of the bundle, in its order,
    each at least as large as the source's
  3 read and verify every chunk of the bundle (nothing is written before
    this has passed)
  4 write each disk stream onto its --disk; the resume image's signature is
    held back, so an interrupted restore is never resumable
  5 write the resume image (or, for an image carried inside a disk, its
    swap header) last, after a sync, read it back and verify it

The resume image of a captured bundle goes to --resume: a swap-formatted
area (mkswap; its label and UUID are kept) that is not a swap of the image
and not on a --disk target, e.g. /dev/sdb2 or disk.img#2. A bundle made by
thaw export carries its image inside its disk and needs no --resume.

No disk other than those given with --disk is opened for writing. The
result (--json) carries resume_args: the kernel arguments that resume it.
`

type restoreDisk struct {
	Stream       string `json:"stream"`
	Target       string `json:"target"`
	Bytes        int64  `json:"bytes"`
	WrittenBytes int64  `json:"written_bytes"`
	ZeroChunks   int    `json:"zero_chunks"`
}

type restoreResult struct {
	Image      string             `json:"image"`
	Signed     bool               `json:"signed"`
	Kernel     string             `json:"kernel"`
	Disks      []restoreDisk      `json:"disks"`
	ResumeArgs []string           `json:"resume_args"`
	Stages     map[string]float64 `json:"stage_seconds"`
}

func runRestore(args []string) error {
	fs := newFlags("restore", "--image REF --pubkey FILE [--identity FILE] --disk DEV|FILE [--disk …] [--json]", restoreHelp)
	image := fs.String("image", "", "the bundle: a file or an http(s) URL")
	pubPath := fs.String("pubkey", "", "minisign public key the bundle must be signed with")
	tokenFile := fs.String("token-file", "", "bearer token for an http(s) --image")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	resumeRef := fs.String("resume", "", "swap-formatted area that receives the resume image (DEV or PATH#N)")
	direct := fs.Bool("direct", false, "after writing the disks, hand the memory image to this machine's running kernel (/dev/snapshot), which jumps into it: for a rescue or agent kernel on the target, with the same memory map as the source")
	var disks multiFlag
	fs.Var(&disks, "disk", "target disk for the bundle's next disk stream (repeat, in the bundle's order)")
	idFiles := addIdentityFlag(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *image == "" || *pubPath == "" || len(disks) == 0 {
		fs.Usage()
		return &exitError{2, errors.New("--image, --pubkey and at least one --disk are required")}
	}
	pub, err := bundle.LoadPublicKey(*pubPath)
	if err != nil {
		return &exitError{2, err}
	}
	res := &restoreResult{Image: *image, Stages: map[string]float64{}}
	stage := func(name string, t0 time.Time) { res.Stages[name] = time.Since(t0).Seconds() }
	say := func(f string, a ...any) {
		if !*asJSON {
			fmt.Fprintf(os.Stderr, "restore: "+f+"\n", a...)
		}
	}

	// 1. Open and verify the signature.
	t0 := time.Now()
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	ids, err := loadIdentities(*idFiles)
	if err != nil {
		return &exitError{2, err}
	}
	br, closeBundle, err := openBundle(*image, token, &pub, ids)
	if err != nil {
		return &exitError{3, fmt.Errorf("%w; nothing was written", err)}
	}
	defer closeBundle()
	m := br.Manifest
	res.Signed, res.Kernel = br.Signed, m.Kernel.Release
	say("bundle %s: kernel %s, %d disk(s), signed by the given key", *image, m.Kernel.Release, len(m.Disks))
	stage("open", t0)

	// 2. Plan the disks.
	if len(disks) != len(m.Disks) {
		return &exitError{3, fmt.Errorf("the bundle carries %d disk(s) but %d --disk were given; nothing was written", len(m.Disks), len(disks))}
	}
	targets := make([]*blockdev.Dev, len(disks))
	for i, d := range disks {
		for j := 0; j < i; j++ {
			if disks[j] == d {
				return &exitError{2, fmt.Errorf("--disk %s given twice", d)}
			}
		}
		dev, err := blockdev.Open(d, true)
		if err != nil {
			return err
		}
		defer dev.Close()
		if dev.Offset != 0 {
			return &exitError{2, fmt.Errorf("--disk %s is a partition; give whole disks", d)}
		}
		src := m.Disks[i]
		if dev.Size < src.Size {
			return &exitError{3, fmt.Errorf("--disk %s holds %d MiB, the source disk %s held %d MiB: too small; nothing was written", d, dev.Size>>20, src.Name, src.Size>>20)}
		}
		if br.Index.Stream(src.Stream) == nil {
			return &exitError{3, fmt.Errorf("the bundle names no stream for disk %s", src.Name)}
		}
		targets[i] = dev
		res.Disks = append(res.Disks, restoreDisk{Stream: src.Stream, Target: d, Bytes: src.Size})
	}
	var resumeDev *blockdev.Dev
	if *direct {
		if *resumeRef != "" {
			return &exitError{2, errors.New("--direct and --resume exclude each other")}
		}
		if err := snapshot.Available(); err != nil {
			return &exitError{3, fmt.Errorf("--direct: %w; nothing was written", err)}
		}
	} else if *resumeRef != "" {
		if resumeDev, err = openResumeArea(*resumeRef, disks, m); err != nil {
			return &exitError{3, fmt.Errorf("%w; nothing was written", err)}
		}
		defer resumeDev.Close()
	} else if m.Resume == nil {
		return &exitError{3, errors.New("the bundle carries no resume area (thaw capture leaves swap in use): give --resume with a swap-formatted partition that is not a swap of the image; nothing was written")}
	}

	// 3. Verify every chunk before writing anything.
	t0 = time.Now()
	if err := br.Verify(progressLine(!*asJSON, "verifying")); err != nil {
		return &exitError{3, fmt.Errorf("%w; nothing was written", err)}
	}
	say("every chunk verified (%.1fs)", time.Since(t0).Seconds())
	stage("verify", t0)

	// 4. Write the disks, holding back the resume signature.
	t0 = time.Now()
	heldHeader, err := writeTargets(br, targets, res.Disks, func(target string) func(int64, int64) { return progressLine(!*asJSON, "writing "+target) }, say)
	if err != nil {
		return err
	}
	stage("write_disks", t0)

	// 5, direct: the running kernel restores the image; disks are synced.
	if *direct {
		stage("handover", t0)
		sr, err := br.OpenStream(m.Image.Stream)
		if err != nil {
			return err
		}
		say("handing the memory image to this kernel (%s)", snapshot.Path)
		err = snapshot.RestoreWith(sr, m.Image.Platform, func(f string, a ...any) { say(f, a...) }, httpra.CloseIdleConnections)
		return fmt.Errorf("direct restore: %w", err)
	}

	// 5. The resume image, last.
	t0 = time.Now()
	if res.ResumeArgs, err = writeResume(br, targets, resumeDev, heldHeader, nil); err != nil {
		return err
	}
	stage("resume_image", t0)
	return printRestore(res, disks, *asJSON)
}

// writeTargets writes each disk stream of the bundle onto its target, in
// the bundle's order. The hibernation signature of an image carried inside
// a disk is held back (the page is written with its swap signature) and
// returned, so that an interrupted restore is never resumable.
func writeTargets(br *bundle.Reader, targets []*blockdev.Dev, rds []restoreDisk, progress func(target string) func(done, total int64), say func(string, ...any)) ([]byte, error) {
	m := br.Manifest
	var held []byte
	for i, dev := range targets {
		rd := &rds[i]
		var hold *int64
		if m.Resume != nil && m.Resume.InDisk && m.Resume.Disk == i {
			hold = &m.Resume.HeaderOffset
		}
		h, err := writeDisk(br, m.Disks[i].Stream, dev, hold, rd, progress(rd.Target))
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", dev.Ref, err)
		}
		if h != nil {
			held = h
		}
		say("%s → %s: %d MiB, %d MiB written, %d zero chunks already zero", rd.Stream, rd.Target, rd.Bytes>>20, rd.WrittenBytes>>20, rd.ZeroChunks)
	}
	return held, nil
}

// writeResume writes the resume image last and returns the kernel
// arguments that resume it: into resumeDev in the kernel's format, or,
// with resumeDev nil, the held header page back into the disk that carries
// an exported image. With resumeDev, an image carried inside a disk keeps
// its neutralized signature: one resumable copy only. What was written is
// read back and verified; if it does not verify, its signature is removed.
//
// mem, if not nil, wraps the memory stream on its way (the agent writes
// the device plan into the mailbox pages).
func writeResume(br *bundle.Reader, targets []*blockdev.Dev, resumeDev *blockdev.Dev, held []byte, mem func(io.Reader) (io.Reader, error)) ([]string, error) {
	m := br.Manifest
	var (
		area       *blockdev.Dev // the swap device the kernel resumes from
		headerPage int64
		resumeArg  string
		err        error
	)
	if resumeDev != nil {
		area, resumeArg = resumeDev, resumeDev.ResumeArg()
	} else {
		if m.Resume == nil {
			return nil, errors.New("the bundle carries no resume area: give one")
		}
		rdev := targets[m.Resume.Disk]
		w := resumeArea(m, rdev)
		// Swap map entries count pages from the start of the swap device:
		// the partition (resume=PARTUUID=…), not the disk.
		if area, err = rdev.Window(w.start, w.size, fmt.Sprintf("%s (resume area)", rdev.Ref)); err != nil {
			return nil, err
		}
		headerPage, resumeArg = (m.Resume.HeaderOffset-w.start)/swsusp.PageSize, resumeTarget(m)
	}
	if resumeDev == nil && m.Resume.InDisk {
		if held == nil || swsusp.ParseHeader(held).Sig != swsusp.SigHibernate {
			return nil, errors.New("the bundle's disk stream holds no hibernation signature at the resume header")
		}
		if _, err := area.WriteAt(held, headerPage*swsusp.PageSize); err != nil {
			return nil, err
		}
		if err := area.Sync(); err != nil {
			return nil, err
		}
	} else if err := writeResumeImage(br, m, area, headerPage, mem); err != nil {
		return nil, fmt.Errorf("writing the resume image to %s: %w", area.Ref, err)
	}
	if err := checkResumeImage(area, headerPage, m); err != nil {
		neutralize(area, headerPage*swsusp.PageSize)
		return nil, fmt.Errorf("the resume image written does not verify, its signature was removed: %w", err)
	}
	args := []string{"resume=" + resumeArg}
	if headerPage != 0 {
		args = append(args, fmt.Sprintf("resume_offset=%d", headerPage))
	}
	return args, nil
}

func printRestore(res *restoreResult, disks []string, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Printf("restored %s (kernel %s) onto %s\nboot the image kernel with: %s\n", res.Image, res.Kernel, strings.Join(disks, ", "), strings.Join(res.ResumeArgs, " "))
	return nil
}

// openResumeArea opens the --resume area and checks it: a swap area, on no
// --disk target, and not a swap the image uses.
func openResumeArea(ref string, disks []string, m *manifest.Manifest) (*blockdev.Dev, error) {
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
	for _, d := range disks {
		if sameFile(d, path) {
			return nil, fmt.Errorf("the resume area %s lies on target disk %s, which the restore overwrites", ref, d)
		}
	}
	dev, err := blockdev.Open(ref, true)
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

type areaWindow struct{ start, size int64 }

// resumeArea is the swap area (partition, or the whole disk) holding the
// resume header.
func resumeArea(m *manifest.Manifest, dev *blockdev.Dev) areaWindow {
	d := m.Disks[m.Resume.Disk]
	for _, p := range d.Partitions {
		if p.Number == m.Resume.Partition {
			return areaWindow{p.Start, p.Size}
		}
	}
	return areaWindow{0, dev.Size}
}

func resumeTarget(m *manifest.Manifest) string {
	if m.Resume.PartUUID != "" {
		return "PARTUUID=" + m.Resume.PartUUID
	}
	return "/dev/" + m.Disks[m.Resume.Disk].Name
}

// writeDisk copies one disk stream onto dev. If hold is set, the page at
// that byte offset is written with its swap signature instead of the
// hibernation one, and its real contents returned.
func writeDisk(br *bundle.Reader, stream string, dev *blockdev.Dev, hold *int64, rd *restoreDisk, progress func(done, total int64)) ([]byte, error) {
	s := br.Index.Stream(stream)
	var held []byte
	var buf []byte
	cur := make([]byte, br.Index.ChunkSize)
	for i, c := range s.Chunks {
		progress(c.Off, s.Size)
		if c.Zero {
			// Leave regions that already read as zero alone (fresh sparse
			// files, trimmed disks); write zeros elsewhere.
			got := cur[:c.Len]
			if _, err := dev.ReadAt(got, c.Off); err != nil && err != io.EOF {
				return nil, fmt.Errorf("read at byte %d: %w", c.Off, err)
			}
			if bundle.IsZero(got) {
				rd.ZeroChunks++
				continue
			}
			clear(got)
			if _, err := dev.WriteAt(got, c.Off); err != nil {
				return nil, err
			}
			rd.WrittenBytes += c.Len
			continue
		}
		out, err := br.ReadChunk(s, i, buf)
		if err != nil {
			return nil, err
		}
		buf = out
		if hold != nil && *hold >= c.Off && *hold+swsusp.PageSize <= c.Off+c.Len {
			pg := out[*hold-c.Off : *hold-c.Off+swsusp.PageSize]
			held = bytes.Clone(pg)
			h := swsusp.ParseHeader(pg)
			if h.Sig == swsusp.SigHibernate {
				h.Sig = h.OrigSig
				h.Put(pg)
			}
		}
		if _, err := dev.WriteAt(out, c.Off); err != nil {
			return nil, err
		}
		rd.WrittenBytes += c.Len
	}
	if err := dev.Sync(); err != nil {
		return nil, err
	}
	progress(s.Size, s.Size)
	return held, nil
}

// progressLine returns a function that redraws one progress line on a
// terminal (at most twice a second), or does nothing elsewhere.
func progressLine(on bool, what string) func(done, total int64) {
	if !on || !isTerminal(os.Stderr) {
		return func(int64, int64) {}
	}
	start, last := time.Now(), time.Time{}
	return func(done, total int64) {
		if time.Since(last) < 500*time.Millisecond && done != total {
			return
		}
		last = time.Now()
		rate := float64(done) / max(time.Since(start).Seconds(), 0.001) / 1e6
		fmt.Fprintf(os.Stderr, "\rrestore: %s %3d%% (%d/%d MiB, %.0f MB/s)", what, done*100/max(total, 1), done>>20, total>>20, rate)
		if done == total {
			fmt.Fprintln(os.Stderr)
		}
	}
}

// writeResumeImage stores the bundle's memory stream in the resume area in
// the kernel's format (signature last).
func writeResumeImage(br *bundle.Reader, m *manifest.Manifest, area *blockdev.Dev, headerPage int64, mem func(io.Reader) (io.Reader, error)) error {
	var sr io.Reader
	sr, err := br.OpenStream(m.Image.Stream)
	if err != nil {
		return err
	}
	if mem != nil {
		if sr, err = mem(sr); err != nil {
			return err
		}
	}
	w, err := swsusp.NewWriter(area, area.Size, headerPage, swsusp.WriterOptions{Compression: swsusp.CompressLZO})
	if err != nil {
		return err
	}
	_, err = w.WriteStream(sr)
	return err
}

// checkResumeImage reads the resume image back and compares its counts
// with the manifest.
func checkResumeImage(area *blockdev.Dev, headerPage int64, m *manifest.Manifest) error {
	r, err := swsusp.NewReader(area, area.Size, headerPage)
	if err != nil {
		return err
	}
	rep, err := r.Verify()
	if err != nil {
		return err
	}
	if m.Image != nil && (rep.DataPages != m.Image.DataPages || rep.Info.Pages != m.Image.Pages) {
		return fmt.Errorf("%d data pages of %d, the manifest says %d of %d", rep.DataPages, rep.Info.Pages, m.Image.DataPages, m.Image.Pages)
	}
	return nil
}

func neutralize(dev *blockdev.Dev, off int64) {
	pg := make([]byte, swsusp.PageSize)
	if _, err := dev.ReadAt(pg, off); err != nil {
		return
	}
	h := swsusp.ParseHeader(pg)
	if h.Sig == swsusp.SigHibernate {
		h.Sig = h.OrigSig
		h.Put(pg)
		dev.WriteAt(pg, off)
		dev.Sync()
	}
}
