package capture

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"aead.dev/minisign"
	"filippo.io/age"
	"golang.org/x/sys/unix"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/physmem"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/agent/snapshot"
	"github.com/thawlinux/thaw/agent/takeover"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/netfetch/s3"
)

// Options say what to capture and where to.
type Options struct {
	To    string // a file path or an http:// or https:// URL
	Token string // bearer token for the URL
	// S3, if set, is the bucket the bundle goes to, as S3Object (To is
	// then only its name in messages).
	S3       *s3.Client
	S3Object s3.Object
	// Roots are the CAs an https:// To is checked against; nil: the
	// system's.
	Roots *x509.CertPool
	Key   minisign.PrivateKey
	// Recipients encrypt the bundle's chunks (age X25519); none writes
	// them in plaintext.
	Recipients []*age.X25519Recipient
	// ChunkKey seals the chunks of a bundle sent to a store (a URL):
	// captures sharing it share their equal chunks there. Nil: a random
	// key, which shares nothing with other captures.
	ChunkKey []byte
	// ChunkKeyFile, if set (and ChunkKey nil), is read for the chunk key
	// (thaw keygen --chunk-key) once every check passed (not in a dry
	// run); with MakeChunkKey it is made (0600) when it does not exist
	// yet.
	ChunkKeyFile string
	MakeChunkKey bool
	// Precopy, for a URL, sends the disks' chunks the store lacks while
	// the machine still runs; the frozen phase then sends only the
	// chunks that changed since. Rate bounds its disk reads (bytes a
	// second; 0: no bound).
	Precopy bool
	Rate    int64
	// Base names the bundle, beside To in the same store, whose memory
	// this capture's is stored as page deltas against; NoBase for none;
	// "" for the one recorded in LastFile.
	Base string
	// LastFile, if set, is where a capture into a store records its
	// bundle's name for the next one (LastCapture), and where that one
	// looks for its base.
	LastFile    string
	Disks       []string // whole disks to carry, /dev/vda …
	MailboxSize int      // bytes; default 4 MiB
	DryRun      bool     // everything but the freeze
	Stall       time.Duration
	Manifest    *manifest.Manifest // the probe of this machine
	Logf        func(format string, a ...any)
}

// Result is what Run did.
type Result struct {
	Resumed      bool   // Run returned in the resumed machine
	Mailbox      string // what the resumed process found in the mailbox
	MemoryPages  uint64
	DiskBytes    int64
	BundleTarget string
	// For a store: the bundle's stored chunks, and those sent (the store
	// had the others).
	Stats bundle.Stats
}

type swapArea struct {
	path string
	used int64
	size int64
}

func activeSwaps() ([]swapArea, error) {
	f, err := os.Open("/proc/swaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []swapArea
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 4 {
			continue
		}
		size, _ := strconv.ParseInt(f[2], 10, 64)
		used, _ := strconv.ParseInt(f[3], 10, 64)
		out = append(out, swapArea{path: strings.ReplaceAll(f[0], `\040`, " "), size: size << 10, used: used << 10})
	}
	return out, s.Err()
}

// rawLog writes to the console with one system call: usable while frozen.
type rawLog struct {
	fd int
	t0 time.Time
}

func (l *rawLog) logf(format string, a ...any) {
	msg := fmt.Sprintf("thaw capture [%6.2fs]: ", time.Since(l.t0).Seconds()) + fmt.Sprintf(format, a...) + "\n"
	fd := l.fd
	if fd < 0 {
		fd = 2
	}
	syscall.Write(fd, []byte(msg))
}

// diskReader reads a whole disk with O_DIRECT into an aligned buffer.
type diskReader struct {
	fd   int
	path string
	size int64
	off  int64
	buf  []byte // page-aligned (mmap)
	pend []byte
	logf func(string, ...any)
	t0   time.Time
	// holes read as zeros: free slots of the own swap (findFreeSlots).
	holes []span
}

func openDisk(path string, buf []byte) (*diskReader, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var size uint64
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), 0x80081272 /* BLKGETSIZE64 */, uintptr(unsafe.Pointer(&size))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("%s: size: %w (a whole block device is needed)", path, e)
	}
	return &diskReader{fd: fd, path: path, size: int64(size), buf: buf}, nil
}

func (d *diskReader) Read(p []byte) (int, error) {
	if len(d.pend) == 0 {
		if d.off >= d.size {
			return 0, io.EOF
		}
		n := min(int64(len(d.buf)), d.size-d.off)
		k, err := syscall.Pread(d.fd, d.buf[:n], d.off)
		if err == syscall.EINTR {
			return 0, nil
		}
		if err != nil || k <= 0 {
			return 0, fmt.Errorf("read %s at byte %d: %v", d.path, d.off, err)
		}
		zeroHoles(d.buf[:k], d.off, d.holes)
		d.off += int64(k)
		d.pend = d.buf[:k]
		if d.logf != nil && d.off%(512<<20) == 0 {
			d.logf("disk %s: %d of %d MiB (%.1f MB/s)", d.path, d.off>>20, d.size>>20, float64(d.off)/time.Since(d.t0).Seconds()/1e6)
		}
	}
	n := copy(p, d.pend)
	d.pend = d.pend[n:]
	return n, nil
}

// snapReader reads the image from /dev/snapshot, one page per read.
type snapReader struct {
	dev   *snapshot.Device
	pages uint64
	first []byte
	buf   []byte
	pend  []byte
	meta  uint64 // metadata pages, known after the first page
	zero  uint64 // PFNs flagged as zero pages (6.9+)
}

func (s *snapReader) Read(p []byte) (int, error) {
	if len(s.pend) == 0 {
		n, err := s.dev.Read(s.buf)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		if n != swsusp.PageSize {
			return 0, fmt.Errorf("short read of %d bytes from %s at page %d", n, snapshot.Path, s.pages)
		}
		if s.pages == 0 {
			copy(s.first, s.buf)
			if info, err := swsusp.ParseInfo(s.first); err == nil {
				s.meta = info.MetaPages()
			}
		} else if s.pages <= s.meta {
			for i := 0; i < n; i += 8 {
				if v := binary.LittleEndian.Uint64(s.buf[i:]); v != ^uint64(0) && v&(1<<63) != 0 {
					s.zero++
				}
			}
		}
		s.pages++
		s.pend = s.buf[:n]
	}
	n := copy(p, s.pend)
	s.pend = s.pend[n:]
	return n, nil
}

// Run captures the machine. In the capturing run it powers the machine off
// and returns only on failure (with user space thawed and swap back on). In
// the resumed run it returns Result.Resumed.
//
// The stages, in order: check, disks, mailbox (a dry run stops there),
// open (everything the frozen phase needs), kernel files, lock (one
// thread, no GC, memory locked), then the frozen phase: freeze, suspend
// the dm devices, create the image — from which the resumed machine
// returns — and stream memory, disks and the signed index, and power off.
func Run(o Options) (*Result, error) {
	c := &capture{o: o, res: &Result{BundleTarget: o.To}, lg: &rawLog{fd: -1, t0: time.Now()}}
	defer c.close()
	c.logf = c.lg.logf
	if o.Logf != nil && o.DryRun {
		c.logf = o.Logf
	}
	for _, stage := range []func() error{c.check, c.describeDisks, c.reserveMailbox} {
		if err := stage(); err != nil {
			return c.res, err
		}
	}
	if c.o.DryRun {
		c.logf("dry run: %d mailbox pages reserved; stopping before the freeze", c.npages)
		return c.res, nil
	}
	for _, stage := range []func() error{c.planOwnSwap, c.open, c.kernelFiles, c.lock} {
		if err := stage(); err != nil {
			return c.res, err
		}
	}
	// The frozen phase: a failure thaws the machine (abort).
	for _, stage := range []func() error{c.freeze, c.suspendDM} {
		if err := stage(); err != nil {
			return c.abort(err)
		}
	}
	inSuspend, err := c.dev.CreateImage()
	if err != nil {
		return c.abort(err)
	}
	if !inSuspend {
		c.res.Resumed = true
		c.res.Mailbox = resumed(c.dev, c.mbox, c.nonce, c.m, c.logf)
		c.logf("machine thawed; exiting")
		return c.res, nil
	}
	c.reserveSlots()
	c.findFreeSlots()
	for _, stage := range []func() error{c.streamMemory, c.streamDisks, c.finish} {
		if err := stage(); err != nil {
			return c.abort(err)
		}
	}
	c.logf("bundle complete and acknowledged (%d memory pages, %d MiB of disks); powering off", c.sr.pages, c.res.DiskBytes>>20)
	err = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	return c.abort(fmt.Errorf("power off: %v", err))
}

// capture is one run of Run: what the stages share.
type capture struct {
	o    Options
	res  *Result
	lg   *rawLog
	logf func(string, ...any)
	m    *manifest.Manifest

	swaps  []swapArea
	mbox   []byte
	nonce  [16]byte
	npages int

	out       sink
	records   bundle.RecordWriter // for S3: the sink, taking each record
	have      map[string]bool     // the store's chunks (a URL)
	plain     *bundle.Plain       // the pre-copy's disk chunks, by plaintext
	pages     *bundle.Pages       // the previous capture's memory pages (loadBase)
	id        string              // the bundle id, the pre-copy's too (thaw.follow=1 waits for it)
	disks     []*diskReader
	pm        int // /proc/self/pagemap
	bw        *bundle.Writer
	toSuspend []string
	suspended []string
	dmc       *dm.Control
	dev       *snapshot.Device
	pmRaw     []byte
	sr        *snapReader
	frozen    []uint64 // the mailbox's PFNs after the freeze
	cleanup   []func()

	// The swap in use that receives the image at restore time.
	own     *manifest.Resume
	holes   []span // the own swap's free slots on its disk (findFreeSlots)
	ownPath string
	ownDev  uint64
}

// toStore reports whether the bundle goes to a chunk store (thaw serve or
// S3), not a file.
func (c *capture) toStore() bool {
	return c.o.S3 != nil || strings.HasPrefix(c.o.To, "http://") || strings.HasPrefix(c.o.To, "https://")
}

func (c *capture) onClose(f func()) { c.cleanup = append(c.cleanup, f) }

// close undoes what the stages set up, last first.
func (c *capture) close() {
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
}

// check: root, /dev/snapshot, a profile of this machine.
func (c *capture) check() error {
	if c.o.MailboxSize == 0 {
		c.o.MailboxSize = 4 << 20
	}
	if c.o.Stall == 0 {
		c.o.Stall = 30 * time.Second
	}
	if os.Geteuid() != 0 {
		return errors.New("capture needs root")
	}
	if err := snapshot.Available(); err != nil {
		return err
	}
	if c.m = c.o.Manifest; c.m == nil {
		return errors.New("no profile of this machine")
	}
	c.m.Kind = "capture"
	if c.o.Precopy && !c.toStore() {
		return errors.New("--precopy needs a store (an https://, http:// or s3:// --to): a file holds every chunk anyway")
	}
	return nil
}

// describeDisks puts the captured disks into the manifest. Swap stays in
// use: the pages it holds travel in the disk streams byte for byte, and
// the kernel can still swap out while it makes room for the image. At
// restore time the resume image goes into free pages of that swap that
// the capture reserves once the image exists (planOwnSwap, reserveSlots),
// or into an area of its own.
func (c *capture) describeDisks() error {
	m := c.m
	swaps, err := activeSwaps()
	if err != nil {
		return err
	}
	c.swaps = swaps
	var used int64
	for _, s := range swaps {
		used += s.used
	}
	// The captured disks, in order: the probe's entry (controller, model,
	// serial) where it has one, its partition table from the disk itself.
	probed := map[string]manifest.Disk{}
	for _, d := range m.Disks {
		probed[d.Name] = d
	}
	m.Disks = nil
	for i, d := range c.o.Disks {
		md, err := probe.DescribeDisk(d)
		if err != nil {
			return err
		}
		if pd, ok := probed[md.Name]; ok {
			// The partition table from the disk, each partition's kernel
			// name and device number from the probe.
			for j := range md.Partitions {
				for _, pp := range pd.Partitions {
					if pp.Number == md.Partitions[j].Number {
						md.Partitions[j].Name, md.Partitions[j].Dev = pp.Name, pp.Dev
					}
				}
			}
			pd.Table, pd.DiskGUID, pd.Partitions, pd.Size = md.Table, md.DiskGUID, md.Partitions, md.Size
			md = &pd
		}
		md.Stream = fmt.Sprintf("disk%d", i)
		var why []string
		if md.Movable, why = plan.Movable(m, *md); !md.Movable {
			c.logf("warning: disk %s can only be restored onto the same controller at the same PCI address: %s (thaw prepare and a reboot make it movable)", md.Name, strings.Join(why, "; "))
		}
		m.Disks = append(m.Disks, *md)
	}
	m.Resume = nil
	c.logf("capturing %d disk(s) %v, %d active swap(s) with %d MiB in use (carried in the disk streams), to %s",
		len(c.o.Disks), c.o.Disks, len(swaps), used>>20, c.o.To)
	for _, sw := range swaps {
		if !onCaptured(m, sw.path) {
			c.logf("warning: swap %s is on no captured disk: the pages it holds will be missing after a restore", sw.path)
		}
	}
	return nil
}

// reserveMailbox maps the mailbox: locked, no huge pages, every page
// marked with the nonce and its number.
func (c *capture) reserveMailbox() error {
	mbox, err := syscall.Mmap(-1, 0, c.o.MailboxSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mailbox: mmap %d bytes: %w", c.o.MailboxSize, err)
	}
	syscall.Madvise(mbox, 15 /* MADV_NOHUGEPAGE */)
	if err := syscall.Mlock(mbox); err != nil {
		return fmt.Errorf("mailbox: mlock: %w", err)
	}
	c.mbox = mbox
	rand.Read(c.nonce[:])
	c.npages = c.o.MailboxSize / swsusp.PageSize
	for i := 0; i < c.npages; i++ {
		mailbox.Mark(mbox[i*swsusp.PageSize:(i+1)*swsusp.PageSize], c.nonce, i)
	}
	return nil
}

// open opens everything the frozen phase needs: the console, the
// bundle's destination, the disks, the pagemap, the bundle writer, the
// device-mapper control and /dev/snapshot.
func (c *capture) open() error {
	m := c.m
	if fd, err := syscall.Open("/dev/console", syscall.O_WRONLY|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0); err == nil {
		c.lg.fd = fd
	}
	var err error
	if c.toStore() {
		// The chunk key is made (the first time) only now, every check
		// passed; the pre-copy and the bundle must seal chunks alike.
		if c.o.ChunkKey == nil && c.o.ChunkKeyFile != "" {
			if err := c.loadChunkKey(); err != nil {
				return err
			}
		}
		if c.o.ChunkKey == nil && len(c.o.Recipients) > 0 {
			c.o.ChunkKey = make([]byte, bundle.ChunkKeySize)
			if _, err := rand.Read(c.o.ChunkKey); err != nil {
				return err
			}
		}
		// A store keeps chunks by their hash: ask which it has, so that
		// only the others cross the network (and the frozen phase).
		if c.o.S3 != nil {
			// A lease first: thaw gc then removes none of the chunks
			// this capture is told are there, until its bundle lands.
			if err = c.o.S3.Lease(context.Background(), c.o.S3Object); err == nil {
				c.have, err = c.o.S3.Chunks(context.Background(), c.o.S3Object)
			}
		} else {
			c.have, err = storeHas(c.o.To, c.o.Token, c.o.Roots)
		}
		if err != nil {
			return fmt.Errorf("asking the store which chunks it has: %w", err)
		}
		c.logf("the store holds %d chunks beside %s", len(c.have), c.o.To)
		c.loadBase()
		c.recordLast()
		if c.o.Precopy {
			if err := c.precopy(); err != nil {
				return fmt.Errorf("pre-copy: %w", err)
			}
		}
		var hs *httpSink
		if c.o.S3 != nil {
			var ss *s3Sink
			if ss, err = openS3Sink(c.o.S3, c.o.S3Object, SinkOptions{Roots: c.o.Roots, Stall: c.o.Stall}); err == nil {
				c.out, c.records = ss, ss
				if !ss.TLS() {
					c.logf("warning: %s is plain http: the requests are signed (the secret key never crosses) and the bundle is encrypted (unless --plaintext), but anyone on the path sees which objects are written", c.o.S3.Endpoint())
				}
			}
		} else if hs, err = openHTTPSink(c.o.To, SinkOptions{Token: c.o.Token, Roots: c.o.Roots, Stall: c.o.Stall}); err == nil {
			c.out = hs
			if !hs.TLS() {
				c.logf("warning: %s is plain http: the bundle is encrypted (unless --plaintext), but the token crosses the network in clear; use https:// (thaw serve --tls-cert) or a one-use token (thaw grant)", c.o.To)
			}
		}
	} else {
		if err := outsideCaptured(c.o.To, m); err != nil {
			return err
		}
		c.out, err = openFileSink(c.o.To)
	}
	if err != nil {
		return err
	}
	c.onClose(c.out.Close)
	dbuf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	for _, d := range c.o.Disks {
		dr, err := openDisk(d, dbuf)
		if err != nil {
			return err
		}
		c.onClose(func() { syscall.Close(dr.fd) })
		c.disks = append(c.disks, dr)
	}
	if c.pm, err = syscall.Open("/proc/self/pagemap", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
		return err
	}
	c.onClose(func() { syscall.Close(c.pm) })
	wo := bundle.WriterOptions{Recipients: c.o.Recipients, ID: c.id}
	if c.have != nil {
		wo.Store = &bundle.StoreOptions{Have: func(sum string) bool { return c.have[sum] }, ChunkKey: c.o.ChunkKey, Plain: c.plain, Pages: c.pages, Records: c.records}
	}
	if c.bw, err = bundle.NewWriter(c.out, wo); err != nil {
		return err
	}
	c.bw.Warm()
	// The dm devices with a mounted filesystem on a captured disk are
	// suspended (filesystem frozen) once user space is: nothing reaches
	// their disks after that, so the resumed kernel can let a dead
	// controller go and be pointed at the disk's new place.
	c.toSuspend = mountedDM(m)
	if len(c.toSuspend) > 0 {
		if c.dmc, err = dm.Open(); err != nil {
			return fmt.Errorf("device-mapper (to suspend %s): %w", strings.Join(c.toSuspend, ", "), err)
		}
		c.onClose(func() { c.dmc.Close() })
	}
	if c.dev, err = snapshot.Open(false); err != nil {
		return err
	}
	c.onClose(func() { c.dev.Close() })
	c.pmRaw = make([]byte, c.npages*8)
	c.sr = &snapReader{dev: c.dev, first: make([]byte, swsusp.PageSize), buf: make([]byte, swsusp.PageSize)}
	return nil
}

// kernelFiles writes the image kernel's files and the firmware ranges
// first, while everything still runs.
func (c *capture) kernelFiles() error {
	if err := kernelStreams(c.bw, c.m.Kernel.Release, c.logf); err != nil {
		return err
	}
	return nonRAMStreams(c.bw, c.m, c.logf)
}

// lock: from here one thread, no GC, memory locked.
func (c *capture) lock() error {
	runtime.LockOSThread()
	c.onClose(runtime.UnlockOSThread)
	procs := runtime.GOMAXPROCS(1)
	c.onClose(func() { runtime.GOMAXPROCS(procs) })
	gc := debug.SetGCPercent(-1)
	c.onClose(func() { debug.SetGCPercent(gc) })
	// A memory limit would start the collector even with GOGC off.
	limit := debug.SetMemoryLimit(math.MaxInt64)
	c.onClose(func() { debug.SetMemoryLimit(limit) })
	// Give the heap the probe and the kernel files used back to the kernel,
	// then lock what is resident and whatever is touched from now on
	// (MCL_ONFAULT: mapped but unused heap is not populated, which would
	// take memory the image needs).
	debug.FreeOSMemory()
	if err := syscall.Mlockall(syscall.MCL_CURRENT | syscall.MCL_FUTURE | mclOnFault); err != nil {
		return fmt.Errorf("mlockall: %w", err)
	}
	c.onClose(func() { syscall.Munlockall() })
	touched, err := faultIn(c.pm)
	if err != nil {
		return fmt.Errorf("bringing this process's pages into RAM: %w", err)
	}
	c.logf("memory locked: %s; %d pages brought back from swap or files", procStatus("VmRSS", "VmLck"), touched)
	c.quietCompaction()
	return c.dev.PlatformSupport(false)
}

// compactionKnob is the sysctl of proactive memory compaction.
const compactionKnob = "/proc/sys/vm/compaction_proactiveness"

// quietCompaction turns proactive compaction off until the capture ends
// (in the resumed machine too, which then sets it back). While the kernel
// preallocated the image's memory on a Debian 12 (6.1) server, kcompactd
// kept migrating pages (soft lockups in proactive_compact_node), and
// 174 MiB took 238 s to allocate under TCG.
func (c *capture) quietCompaction() {
	old, err := os.ReadFile(compactionKnob)
	if err != nil || strings.TrimSpace(string(old)) == "0" {
		return
	}
	if err := os.WriteFile(compactionKnob, []byte("0\n"), 0); err != nil {
		c.logf("warning: %s: %v", compactionKnob, err)
		return
	}
	c.onClose(func() { os.WriteFile(compactionKnob, old, 0) })
}

// planOwnSwap chooses the swap in use that the image goes into at
// restore time (ownSwap). Without one, a restore needs a resume area of
// its own.
func (c *capture) planOwnSwap() error {
	devOf := func(path string) (string, error) {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
	}
	own, path, err := ownSwap(c.m, devOf)
	if err != nil {
		c.logf("warning: no swap in use can take the image at restore time (%v): a restore needs a resume area (--resume, thaw.area=)", err)
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		c.logf("warning: swap %s: %v: a restore needs a resume area (--resume, thaw.area=)", path, err)
		return nil
	}
	c.own, c.ownPath, c.ownDev = own, path, st.Rdev
	c.logf("the image goes into swap %s (%s) at restore time: its free pages are reserved once the image exists", path, own.Device)
	return nil
}

// reserveSlots takes, once the image exists, enough free pages of the
// chosen swap for the image in the kernel's format (SNAPSHOT_ALLOC_SWAP_PAGE,
// as s2disk does). The image predates them: the resumed kernel finds them
// free. Failing here only costs the restore its own-swap path.
func (c *capture) reserveSlots() {
	if c.own == nil {
		return
	}
	size, err := c.dev.ImageSize()
	if err == nil {
		err = c.dev.SetSwapArea(c.ownDev, 0)
	}
	if err != nil {
		c.logf("warning: reserving swap for the image: %v: a restore needs a resume area", err)
		return
	}
	need := slotsNeeded(size)
	var ext extents
	var got int64
	for ; got < need; got++ {
		off, err := c.dev.AllocSwapPage()
		if err != nil {
			c.logf("warning: %s: %d of %d pages reserved: %v", c.ownPath, got, need, err)
			break
		}
		ext.add(uint64(off / swsusp.PageSize))
	}
	if got == 0 {
		return
	}
	c.own.Slots = ext
	c.m.Resume = c.own
	c.logf("reserved %d pages (%d MiB, %d runs) of %s for the image", got, got*swsusp.PageSize>>20, len(ext), c.ownPath)
}

// abort resumes what was suspended and thaws the machine.
func (c *capture) abort(err error) (*Result, error) {
	for i := len(c.suspended) - 1; i >= 0; i-- {
		if rerr := c.dmc.Resume(c.suspended[i]); rerr != nil {
			c.logf("resume %s: %v", c.suspended[i], rerr)
		}
	}
	if terr := c.dev.Thaw(); terr != nil {
		c.logf("thaw: %v", terr)
	}
	c.logf("aborted, machine thawed: %v", err)
	return c.res, err
}

// freeze stops user space. The mailbox's PFNs after the freeze are kept
// for a cross-check: reclaim and compaction while the kernel makes room
// for the image may still move (locked) pages, so the PFNs read after
// CREATE_IMAGE are the ones the image has.
func (c *capture) freeze() error {
	c.logf("freezing")
	if err := c.dev.Freeze(); err != nil {
		return err
	}
	var err error
	c.frozen, err = readPFNs(c.pm, c.mbox, c.pmRaw)
	return err
}

// suspendDM suspends the dm devices with a mounted filesystem on a
// captured disk (their filesystems frozen).
func (c *capture) suspendDM() error {
	for _, name := range c.toSuspend {
		t0 := time.Now()
		if err := c.dmc.Suspend(name, 0); err != nil {
			return fmt.Errorf("suspend %s: %w", name, err)
		}
		c.suspended = append(c.suspended, name)
		c.logf("suspended %s (filesystem frozen) in %.2fs", name, time.Since(t0).Seconds())
		for i := range c.m.DM {
			if c.m.DM[i].Name == name {
				c.m.DM[i].Suspended = true
			}
		}
	}
	return nil
}

// streamMemory streams the image from /dev/snapshot into the bundle and
// records it, with the mailbox's pages, in the manifest.
func (c *capture) streamMemory() error {
	pfns, err := readPFNs(c.pm, c.mbox, c.pmRaw)
	if err != nil {
		return err
	}
	moved := 0
	for i := range pfns {
		if pfns[i] != c.frozen[i] {
			moved++
		}
	}
	size, _ := c.dev.ImageSize()
	c.logf("image created: %d MiB; %d of %d mailbox pages moved while the kernel made room; streaming memory", size>>20, moved, len(pfns))
	sw, err := c.bw.Stream("memory", bundle.KindMemory)
	if err != nil {
		return err
	}
	if _, err := sw.ReadFrom(c.sr); err != nil {
		return fmt.Errorf("memory stream: %w", err)
	}
	if err := sw.Close(); err != nil {
		return err
	}
	sr := c.sr
	c.res.MemoryPages = sr.pages
	info, err := swsusp.ParseInfo(sr.first)
	if err != nil {
		return err
	}
	if info.Pages != sr.pages {
		return fmt.Errorf("/dev/snapshot gave %d pages, swsusp_info says %d", sr.pages, info.Pages)
	}
	c.m.Image = &manifest.Image{Release: c.m.Kernel.Release, Pages: info.Pages, DataPages: info.ImagePages, MetaPages: info.MetaPages(),
		NumPhysPages: info.NumPhysPages, E820Checksum: fmt.Sprintf("%#08x", info.Arch.E820Checksum), Stream: "memory"}
	c.m.Image.ZeroPages = sr.zero
	c.m.Mailbox = &manifest.Mailbox{Nonce: hex.EncodeToString(c.nonce[:]), PFNs: pfns}
	return nil
}

// streamDisks streams each captured disk, read while frozen.
func (c *capture) streamDisks() error {
	c.logf("memory: %d pages; streaming %d disk(s)", c.sr.pages, len(c.disks))
	for i, d := range c.disks {
		sw, err := c.bw.Stream(fmt.Sprintf("disk%d", i), bundle.KindDisk)
		if err != nil {
			return err
		}
		d.logf, d.t0 = c.logf, time.Now()
		if c.own != nil && c.own.Disk == i {
			d.holes = c.holes
		}
		n, err := sw.ReadFrom(d)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.path, err)
		}
		if err := sw.Close(); err != nil {
			return err
		}
		c.res.DiskBytes += n
		c.logf("disk %s: %d MiB", d.path, n>>20)
	}
	return nil
}

// finish writes the manifest and the signed index, and waits for the
// destination to acknowledge the whole bundle.
func (c *capture) finish() error {
	if _, err := c.bw.Finish(c.m, &c.o.Key); err != nil {
		return err
	}
	if err := c.out.Finish(); err != nil {
		return err
	}
	c.res.Stats = c.bw.Stats()
	if st := c.res.Stats; c.have != nil {
		c.logf("chunks: %d stored (%d MiB), %d sent (%d MiB); the store had the others; %d disk chunks unchanged since the pre-copy; %d page deltas took %d pages (%d MiB) from the previous capture", st.Chunks, st.StoredBytes>>20, st.Sent, st.SentBytes>>20, st.Reused, st.Deltas, st.DeltaPages, st.DeltaPages>>8)
	}
	return nil
}

// resumed runs in the resumed machine while every other process is still
// frozen: it reads the mailbox, applies the device plan it carries (or
// only resumes what the capture suspended), and thaws the machine. It
// returns what it found in the mailbox.
func resumed(dev *snapshot.Device, mbox []byte, nonce [16]byte, m *manifest.Manifest, logf func(string, ...any)) string {
	pl, mods, found := readMailbox(mbox, nonce)
	logf("resumed: %s", found)
	sys := takeover.NewLinux()
	defer sys.Close()
	if pl != nil {
		takeover.Quiesce(sys, pl, mods, m, logf)
	}
	// Kernel threads thaw here: drivers' probes and the SCSI scan need
	// them. User space stays frozen until the devices are in place.
	if err := dev.Free(); err != nil {
		logf("free: %v", err)
	}
	rep := takeover.Apply(sys, pl, mods, m, logf)
	if err := dev.Thaw(); err != nil {
		logf("thaw: %v", err)
	}
	// Released, /dev/snapshot lets CPUs be hot-plugged again.
	if err := dev.Close(); err != nil {
		logf("close %s: %v", snapshot.Path, err)
	}
	takeover.Thawed(sys, rep, logf)
	if rep.Failed() {
		logf("warning: some device steps failed (above); the server runs on")
	}
	return found
}

// readMailbox reads the payload the agent wrote into the mailbox: the
// device plan and the modules to load. With no payload it checks the
// markers.
func readMailbox(mbox []byte, nonce [16]byte) (*plan.Plan, []takeover.Module, string) {
	p, err := mailbox.Parse(mbox, nonce)
	if errors.Is(err, mailbox.ErrNoPayload) {
		n := len(mbox) / mailbox.PageSize
		if intact := mailbox.CountMarkers(mbox, nonce); intact != n {
			return nil, nil, fmt.Sprintf("mailbox damaged: %d of %d pages carry their marker", intact, n)
		}
		return nil, nil, fmt.Sprintf("mailbox intact (%d pages, no payload)", n)
	}
	if err != nil {
		return nil, nil, fmt.Sprintf("mailbox payload REJECTED, device plan not applied: %v", err)
	}
	var pl plan.Plan
	if err := json.Unmarshal(p.Plan(), &pl); err != nil {
		return nil, nil, fmt.Sprintf("mailbox payload verified but its plan is unreadable, not applied: %v", err)
	}
	var mods []takeover.Module
	size := 0
	for _, e := range p.Modules() {
		mods = append(mods, takeover.Module{Name: e.Name, Image: e.Data})
		size += len(e.Data)
	}
	return &pl, mods, fmt.Sprintf("mailbox payload verified (digest %x…, %d bytes): device plan with %d row(s), %d module(s) of %d KiB",
		p.Digest[:6], p.Size, len(pl.Devices), len(mods), size>>10)
}

// mountedDM lists the device-mapper devices that carry a mounted
// filesystem and lie on a captured disk.
func mountedDM(m *manifest.Manifest) []string {
	above := map[string]bool{}
	for _, d := range m.Disks {
		for _, n := range plan.DMAbove(m, d) {
			above[n] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, mt := range m.Mounts {
		for _, d := range m.DM {
			if d.Dev == mt.Dev && above[d.Name] && !seen[d.Name] {
				seen[d.Name] = true
				out = append(out, d.Name)
			}
		}
	}
	return out
}

// outsideCaptured refuses an output file on a captured disk.
func outsideCaptured(path string, m *manifest.Manifest) error {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Dir(path), &st); err != nil {
		return err
	}
	disks := disksBehind(uint64(st.Dev))
	for _, d := range m.Disks {
		for _, b := range disks {
			if b == d.Name {
				return fmt.Errorf("%s lies on %s, a disk being captured: write the bundle to another disk or to thaw serve", path, d.Name)
			}
		}
	}
	return nil
}

// disksBehind lists the whole disks under a block device number, through
// partitions and device-mapper slaves.
func disksBehind(dev uint64) []string {
	major, minor := (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return nil
	}
	return disksOfSys(sys)
}

func disksOfSys(sys string) []string {
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return []string{filepath.Base(filepath.Dir(sys))}
	}
	slaves, _ := os.ReadDir(filepath.Join(sys, "slaves"))
	if len(slaves) == 0 {
		return []string{filepath.Base(sys)}
	}
	var out []string
	for _, s := range slaves {
		real, err := filepath.EvalSymlinks(filepath.Join(sys, "slaves", s.Name()))
		if err == nil {
			out = append(out, disksOfSys(real)...)
		}
	}
	return out
}

// AutoDisks lists the whole disks (/dev/NAME) behind the mounted
// filesystems and active swap areas of this machine.
func AutoDisks(m *manifest.Manifest) []string {
	seen := map[string]bool{}
	var out []string
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] && !strings.HasPrefix(n, "loop") && !strings.HasPrefix(n, "ram") && !strings.HasPrefix(n, "zram") {
				seen[n] = true
				out = append(out, "/dev/"+n)
			}
		}
	}
	for _, mt := range m.Mounts {
		if sys, err := filepath.EvalSymlinks("/sys/dev/block/" + mt.Dev); err == nil {
			add(disksOfSys(sys))
		}
	}
	swaps, _ := activeSwaps()
	for _, s := range swaps {
		var st syscall.Stat_t
		if syscall.Stat(s.path, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			add(disksBehind(uint64(st.Rdev)))
		} else if syscall.Stat(s.path, &st) == nil {
			add(disksBehind(uint64(st.Dev)))
		}
	}
	return out
}

// onCaptured reports whether a swap device or file lies on a captured disk.
func onCaptured(m *manifest.Manifest, path string) bool {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return false
	}
	dev := uint64(st.Dev)
	if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
		dev = uint64(st.Rdev)
	}
	for _, n := range disksBehind(dev) {
		for _, d := range m.Disks {
			if d.Name == n {
				return true
			}
		}
	}
	return false
}

// mclOnFault is MCL_ONFAULT (Linux 4.4).
const mclOnFault = 4

// procStatus returns the named fields of /proc/self/status.
func procStatus(names ...string) string {
	b, _ := os.ReadFile("/proc/self/status")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, n := range names {
			if strings.HasPrefix(l, n+":") {
				out = append(out, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// readPFNs reads the page frame numbers of a locked region from
// /proc/self/pagemap with one pread.
func readPFNs(pm int, region []byte, raw []byte) ([]uint64, error) {
	got, err := syscall.Pread(pm, raw, int64(uintptr(unsafe.Pointer(&region[0]))/swsusp.PageSize)*8)
	if err != nil || got != len(raw) {
		return nil, fmt.Errorf("read /proc/self/pagemap: %d bytes, %v", got, err)
	}
	pfns := make([]uint64, len(raw)/8)
	for i := range pfns {
		e := binary.LittleEndian.Uint64(raw[i*8:])
		if e&(1<<63) == 0 {
			return nil, fmt.Errorf("mailbox page %d is not present in RAM", i)
		}
		pfns[i] = e & (1<<55 - 1)
	}
	return pfns, nil
}

// kernelStreams stores the running kernel's vmlinuz, initrd and a tar of
// its modules tree, as the restore side needs them to boot the image kernel.
// A missing file is noted, not fatal (a kernel booted over the network may
// have none on disk).
func kernelStreams(bw *bundle.Writer, release string, logf func(string, ...any)) error {
	for _, f := range []struct{ name, path string }{
		{"vmlinuz", "/boot/vmlinuz-" + release},
		{"initrd", "/boot/initrd.img-" + release},
	} {
		fh, err := os.Open(f.path)
		if err != nil {
			logf("note: %v: the bundle carries no %s", err, f.name)
			continue
		}
		sw, err := bw.Stream(f.name, bundle.KindFile)
		if err == nil {
			_, err = sw.ReadFrom(fh)
		}
		fh.Close()
		if err == nil {
			err = sw.Close()
		}
		if err != nil {
			return fmt.Errorf("bundle stream %s: %w", f.name, err)
		}
	}
	dir := "/lib/modules/" + release
	if _, err := os.Stat(dir); err != nil {
		logf("note: no %s: the bundle carries no modules", dir)
		return nil
	}
	sw, err := bw.Stream("modules", bundle.KindFile)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(sw)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(dir), path)
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			fh, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, fh)
			fh.Close()
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = sw.Close()
	}
	if err != nil {
		return fmt.Errorf("bundle stream modules (%s): %w", dir, err)
	}
	return nil
}

// nonRAMStreams stores the firmware's non-RAM ranges between 1 MiB and
// 4 GiB (the ACPI tables live there, and the image does not hold them): a
// target with another memory layout gets them written back at their
// physical addresses before the restore. A range that cannot be read is
// noted and left out.
func nonRAMStreams(bw *bundle.Writer, m *manifest.Manifest, logf func(string, ...any)) error {
	rs, err := physmem.Ranges(m.E820, 0)
	if err != nil {
		logf("note: %v: firmware ranges not carried", err)
		return nil
	}
	var unread []manifest.E820Entry
	for i, r := range rs {
		// Tables are KiB to a few MiB; bigger reserved ranges are device
		// windows (a q35 machine's 256 MiB MMCONFIG), not carried.
		if r.End-r.Start > 16<<20 {
			logf("note: firmware range %#x-%#x (%d MiB) is a device window, not carried", r.Start, r.End, (r.End-r.Start)>>20)
			continue
		}
		b, err := physmem.Read(r.Start, r.End-r.Start)
		if err != nil {
			logf("note: firmware range %#x-%#x not carried: %v", r.Start, r.End, err)
			unread = append(unread, r)
			continue
		}
		name := fmt.Sprintf("nonram%d", i)
		if err := fileStream(bw, name, b); err != nil {
			return err
		}
		m.NonRAM = append(m.NonRAM, manifest.PhysRange{Start: r.Start, End: r.End, Type: r.Type, Stream: name})
	}
	return dsdtStream(bw, m, unread, "/sys/firmware/acpi/tables", logf)
}

// fileStream writes b as the file stream name.
func fileStream(bw *bundle.Writer, name string, b []byte) error {
	sw, err := bw.Stream(name, bundle.KindFile)
	if err != nil {
		return err
	}
	if _, err := sw.Write(b); err != nil {
		return err
	}
	return sw.Close()
}

// dsdtStream carries the DSDT from the kernel's copy of the tables (dir)
// when the range that holds it could not be read (UEFI: /dev/mem refuses
// the ranges typed ACPI): the resumed kernel executes its AML in place,
// at the address the FADT names. The ACPI NVS ranges (and the FACS in
// them) the kernel saves in its image itself.
func dsdtStream(bw *bundle.Writer, m *manifest.Manifest, unread []manifest.E820Entry, dir string, logf func(string, ...any)) error {
	if len(unread) == 0 {
		return nil
	}
	facp, err := os.ReadFile(filepath.Join(dir, "FACP"))
	if err != nil {
		logf("note: the DSDT is not carried: %v", err)
		return nil
	}
	addr, _, err := physmem.FADTPointers(facp)
	if err != nil || addr == 0 {
		logf("note: the DSDT is not carried: no address in the FADT (%v)", err)
		return nil
	}
	var in *manifest.E820Entry
	for i := range unread {
		if addr >= unread[i].Start && addr < unread[i].End {
			in = &unread[i]
		}
	}
	if in == nil {
		return nil // its range was carried, or lies outside the window
	}
	b, err := os.ReadFile(filepath.Join(dir, "DSDT"))
	if err == nil {
		_, err = physmem.TableLength("DSDT", b)
	}
	if err != nil {
		logf("note: the DSDT is not carried: %v", err)
		return nil
	}
	if addr+uint64(len(b)) > in.End {
		logf("note: the DSDT is not carried: %d bytes at %#x run past its range's end %#x", len(b), addr, in.End)
		return nil
	}
	if err := fileStream(bw, "acpi-dsdt", b); err != nil {
		return err
	}
	m.NonRAM = append(m.NonRAM, manifest.PhysRange{Start: addr, End: addr + uint64(len(b)), Type: in.Type, Stream: "acpi-dsdt"})
	logf("firmware range %#x-%#x: the DSDT (%d bytes at %#x) carried from %s", in.Start, in.End, len(b), addr, dir)
	return nil
}
