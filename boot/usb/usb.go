package usb

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/bootparam"
)

const (
	mib = int64(1) << 20
	// partStart is where partition 1 starts; the last MiB holds the
	// backup GPT.
	partStart = mib
	// espMin is the smallest ESP: FAT32 needs 65525 clusters, and the
	// agent (about 25 MiB) must fit with room to spare.
	espMin = 64 * mib
	// dataMin is the smallest data partition.
	dataMin = 64 * mib
)

// A bundle larger than fatFileMax (FAT32 holds files up to 4 GiB - 1) is
// split into parts of partMax bytes: NAME.000, NAME.001, …
var (
	partMax    = int64(2) << 30
	fatFileMax = int64(4)<<30 - 1
)

// Default paths of the boot loaders on Debian.
const (
	SystemdBoot    = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi" // systemd-boot-efi
	SyslinuxBin    = "/usr/bin/syslinux"                             // syslinux (the mtools installer)
	SyslinuxGPTMBR = "/usr/lib/syslinux/mbr/gptmbr.bin"              // syslinux-common
)

// Bundle is a bundle file to put on the stick, as Name.
type Bundle struct {
	Name string // the file name on the stick: "web1.thaw"
	Path string
	// Chunks are the chunks a bundle from a store names (their sha256):
	// they are copied from the chunks/ directory beside Path to the
	// stick's, where the agent looks for them.
	Chunks []string
}

// chunkFiles maps the stick's chunk files to the host's.
func chunkFiles(bs []Bundle) map[string]string {
	out := map[string]string{}
	for _, b := range bs {
		for _, sum := range b.Chunks {
			p := bundle.ChunkPath(sum)
			out[p] = filepath.Join(filepath.Dir(b.Path), filepath.FromSlash(p))
		}
	}
	return out
}

// Entry is one boot menu entry.
type Entry struct {
	ID    string // loader entry file and syslinux label: "restore-web1"
	Title string
	Args  string // the kernel command line
}

// Config is what goes on the stick.
type Config struct {
	Kernel, Initrd string // the agent
	SystemdBoot    string // systemd-bootx64.efi; "" leaves UEFI out
	// Syslinux and GPTMBR make the stick boot on BIOS machines too; ""
	// leaves BIOS out.
	Syslinux, GPTMBR string
	Bundles          []Bundle
	// Packs are driver packs (RELEASE.pack files, thaw driverpack
	// build), put under PacksDir on the data partition for
	// thaw.packs=usb:packs.
	Packs   []string
	Entries []Entry
	Default string // the ID of the default entry
	Timeout int    // seconds before the default boots
	// Size is the whole image's size; 0: what the files need (a device:
	// its size). The data partition takes what the ESP leaves.
	Size int64
	// Readme is the data partition's README.txt.
	Readme string
	// InitrdAppend is a cpio archive appended to the initramfs on the
	// ESP (the kernel reads concatenated archives): identities, keys.
	InitrdAppend []byte
}

// PacksDir is the data partition's directory of driver packs: the agent
// reads it with thaw.packs=usb:packs.
const PacksDir = "packs"

func bundlePaths(bs []Bundle) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Path)
	}
	return out
}

// Layout is where the partitions lie, in bytes.
type Layout struct {
	Size                int64
	ESPStart, ESPSize   int64
	DataStart, DataSize int64
}

// Plan checks cfg and its files and says where everything goes; nothing is
// written. size is the device's size, or 0 for a new file.
func Plan(cfg Config, size int64) (Layout, error) {
	if cfg.SystemdBoot == "" && cfg.Syslinux == "" {
		return Layout{}, errors.New("neither systemd-boot (UEFI) nor syslinux (BIOS): the stick would not boot")
	}
	if (cfg.Syslinux == "") != (cfg.GPTMBR == "") {
		return Layout{}, errors.New("BIOS boot needs both the syslinux installer and gptmbr.bin")
	}
	espNeed := int64(0)
	for _, f := range []string{cfg.Kernel, cfg.Initrd, cfg.SystemdBoot, cfg.GPTMBR} {
		if f == "" {
			continue
		}
		n, err := fileSize(f)
		if err != nil {
			return Layout{}, err
		}
		espNeed += roundUp(n, mib)
	}
	if cfg.Syslinux != "" {
		if _, err := exec.LookPath(cfg.Syslinux); err != nil {
			return Layout{}, fmt.Errorf("syslinux installer %s: %w (install Debian's syslinux and mtools, or leave BIOS boot out)", cfg.Syslinux, err)
		}
	}
	esp := max(espMin, roundUp(espNeed+espNeed/4+8*mib, mib))

	names := map[string]bool{}
	dataNeed := 16 * mib // directories, README, logs
	for _, b := range cfg.Bundles {
		if !bootparam.StickName(b.Name) {
			return Layout{}, fmt.Errorf("bundle name %q: letters, digits, '.', '_' and '-' only, not starting with '.' (it becomes thaw.image=usb:NAME)", b.Name)
		}
		if names[strings.ToLower(b.Name)] {
			return Layout{}, fmt.Errorf("two bundles are named %s (FAT names ignore case)", b.Name)
		}
		names[strings.ToLower(b.Name)] = true
		n, err := fileSize(b.Path)
		if err != nil {
			return Layout{}, err
		}
		dataNeed += roundUp(n, 32<<10) + 64<<10
	}
	if cf := chunkFiles(cfg.Bundles); len(cf) > 0 {
		dataNeed += 256 * 64 << 10 // chunks/00 … chunks/ff
		for _, f := range cf {
			n, err := fileSize(f)
			if err != nil {
				return Layout{}, fmt.Errorf("a chunk of a bundle from a store: %w (copy the bundle with its store's chunks/ directory beside it)", err)
			}
			dataNeed += roundUp(n, 32<<10)
		}
	}
	packs := map[string]bool{}
	for _, p := range cfg.Packs {
		base := filepath.Base(p)
		if !strings.HasSuffix(base, ".pack") || !bootparam.StickName(base) || packs[strings.ToLower(base)] {
			return Layout{}, fmt.Errorf("driver pack %s: a pack is named RELEASE.pack (as thaw driverpack build writes it), once", p)
		}
		packs[strings.ToLower(base)] = true
		n, err := fileSize(p)
		if err != nil {
			return Layout{}, err
		}
		dataNeed += roundUp(n, 32<<10) + 64<<10
	}
	data := max(dataMin, roundUp(dataNeed+dataNeed/64, mib))
	need := partStart + esp + data + mib
	total := size
	if total == 0 {
		total = cfg.Size
	}
	if total == 0 {
		total = need
	}
	if total < need {
		return Layout{}, fmt.Errorf("the stick needs %d MiB (ESP %d MiB, data %d MiB) and has %d MiB", need>>20, esp>>20, data>>20, total>>20)
	}
	l := Layout{Size: total, ESPStart: partStart, ESPSize: esp, DataStart: partStart + esp}
	l.DataSize = (total - mib - l.DataStart) / mib * mib
	// go-diskfs's FAT32 keeps its sectors per FAT in 16 bits: with 32 KiB
	// clusters that is 255 GiB. The rest of a larger stick stays unused.
	l.DataSize = min(l.DataSize, 255<<30)
	// Sizes from 260 to 281 MB hold too few 4 KiB clusters for FAT32.
	if _, ok := fatSize(l.DataSize); !ok {
		if size != 0 || cfg.Size != 0 {
			l.DataSize = 240 * mib
		} else {
			l.DataSize = 272 * mib
			l.Size = l.DataStart + l.DataSize + mib
		}
	}
	for _, n := range []int64{l.ESPSize, l.DataSize} {
		if _, ok := fatSize(n); !ok {
			return Layout{}, fmt.Errorf("no FAT32 layout fits a %d MiB partition", n>>20)
		}
	}
	if cfg.Default != "" {
		found := false
		for _, e := range cfg.Entries {
			found = found || e.ID == cfg.Default
		}
		if !found {
			return Layout{}, fmt.Errorf("the default entry %s is not in the menu", cfg.Default)
		}
	}
	return l, nil
}

// Write writes the stick to dst: a new file (which must not exist) or a
// block device (its whole size). Everything is checked by Plan first.
// progress (may be nil) hears the bytes copied of the total.
func Write(dst string, cfg Config, progress func(done, total int64)) (Layout, error) {
	devSize, isDev, err := target(dst)
	if err != nil {
		return Layout{}, err
	}
	l, err := Plan(cfg, devSize)
	if err != nil {
		return l, err
	}
	var d *disk.Disk
	if isDev {
		d, err = diskfs.Open(dst, diskfs.WithOpenMode(diskfs.ReadWriteExclusive), diskfs.WithSectorSize(diskfs.SectorSize512))
	} else {
		d, err = diskfs.Create(dst, l.Size, diskfs.SectorSize512)
	}
	if err != nil {
		return l, fmt.Errorf("open %s: %w", dst, err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()

	esp := &gpt.Partition{Index: 1, Start: uint64(l.ESPStart / 512), End: uint64((l.ESPStart+l.ESPSize)/512 - 1),
		Type: gpt.EFISystemPartition, Name: stick.ESPLabel}
	if cfg.Syslinux != "" {
		esp.Attributes = 1 << 2 // legacy BIOS bootable: gptmbr.bin boots it
	}
	data := &gpt.Partition{Index: 2, Start: uint64(l.DataStart / 512), End: uint64((l.DataStart+l.DataSize)/512 - 1),
		Type: gpt.MicrosoftBasicData, Name: stick.DataLabel}
	if err := d.Partition(&gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{esp, data}}); err != nil {
		return l, fmt.Errorf("%s: partition table: %w", dst, err)
	}

	var total, done int64
	for _, f := range []string{cfg.Kernel, cfg.Initrd, cfg.SystemdBoot} {
		n, _ := fileSize(f)
		total += n
	}
	for _, f := range append(bundlePaths(cfg.Bundles), cfg.Packs...) {
		n, _ := fileSize(f)
		total += n
	}
	for _, f := range chunkFiles(cfg.Bundles) {
		n, _ := fileSize(f)
		total += n
	}
	copied := func(n int64) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}

	espFS, err := createFAT32(d, 1, stick.ESPLabel)
	if err != nil {
		return l, fmt.Errorf("%s: ESP filesystem: %w", dst, err)
	}
	files := map[string]string{} // ESP path → host file
	text := map[string]string{}  // ESP path → contents
	files[stick.KernelPath] = cfg.Kernel
	files[stick.InitrdPath] = cfg.Initrd
	if len(cfg.InitrdAppend) > 0 {
		b, err := os.ReadFile(cfg.Initrd)
		if err != nil {
			return l, err
		}
		// The kernel looks for the next archive at a multiple of 4
		// bytes and skips the zeros before it.
		if pad := len(b) % 512; pad != 0 {
			b = append(b, make([]byte, 512-pad)...)
		}
		delete(files, stick.InitrdPath)
		text[stick.InitrdPath] = string(append(b, cfg.InitrdAppend...))
	}
	if cfg.SystemdBoot != "" {
		files["EFI/BOOT/BOOTX64.EFI"] = cfg.SystemdBoot
		text["loader/loader.conf"] = LoaderConf(cfg)
		for _, e := range cfg.Entries {
			text["loader/entries/"+e.ID+".conf"] = LoaderEntry(e)
		}
	}
	if cfg.Syslinux != "" {
		text["syslinux/syslinux.cfg"] = SyslinuxCfg(cfg)
	}
	if err := writeFiles(espFS, files, text, copied); err != nil {
		return l, fmt.Errorf("%s: ESP: %w", dst, err)
	}
	if len(cfg.InitrdAppend) > 0 {
		n, _ := fileSize(cfg.Initrd)
		copied(n) // written as text, with the archive appended
	}

	dataFS, err := createFAT32(d, 2, stick.DataLabel)
	if err != nil {
		return l, fmt.Errorf("%s: data filesystem: %w", dst, err)
	}
	if err := dataFS.Mkdir("/" + stick.LogDir); err != nil {
		return l, fmt.Errorf("%s: %s: %w", dst, stick.LogDir, err)
	}
	dfiles, dtext := map[string]string{}, map[string]string{"README.txt": cfg.Readme}
	if cfg.Readme == "" {
		delete(dtext, "README.txt")
	}
	for _, b := range cfg.Bundles {
		n, _ := fileSize(b.Path)
		if n <= fatFileMax {
			dfiles[b.Name] = b.Path
			continue
		}
		for i := int64(0); i*partMax < n; i++ {
			dfiles[fmt.Sprintf("%s.%03d", b.Name, i)] = b.Path + "@" + strconv.FormatInt(i*partMax, 10)
		}
	}
	for _, p := range cfg.Packs {
		dfiles[PacksDir+"/"+filepath.Base(p)] = p
	}
	for stickPath, host := range chunkFiles(cfg.Bundles) {
		dfiles[stickPath] = host
	}
	if err := writeFiles(dataFS, dfiles, dtext, copied); err != nil {
		return l, fmt.Errorf("%s: data partition: %w", dst, err)
	}
	closed = true
	if err := d.Close(); err != nil {
		return l, err
	}
	if cfg.Syslinux != "" {
		if err := installSyslinux(dst, l, cfg); err != nil {
			return l, err
		}
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return l, err
	}
	defer f.Close()
	for _, start := range []int64{l.ESPStart, l.DataStart} {
		if err := fixFAT32(f, start); err != nil {
			return l, fmt.Errorf("%s: %w", dst, err)
		}
	}
	return l, f.Sync()
}

// installSyslinux puts syslinux's boot sector and ldlinux.sys into the
// ESP (the installer works on the image through mtools) and gptmbr.bin
// into the protective MBR's boot code.
func installSyslinux(dst string, l Layout, cfg Config) error {
	cmd := exec.Command(cfg.Syslinux, "--install", "--offset", strconv.FormatInt(l.ESPStart, 10), "--directory", "/syslinux", dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("syslinux on %s at offset %d: %w: %s", dst, l.ESPStart, err, strings.TrimSpace(string(out)))
	}
	mbr, err := os.ReadFile(cfg.GPTMBR)
	if err != nil {
		return err
	}
	if len(mbr) > 440 {
		return fmt.Errorf("%s is %d bytes: more than the MBR's 440 bytes of boot code", cfg.GPTMBR, len(mbr))
	}
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		f.Close()
		return fmt.Errorf("%s: MBR boot code: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeFiles copies host files (a path, or PATH@OFFSET for one part of a
// split file) and writes texts into fs, making directories as needed.
func writeFiles(fs filesystem.FileSystem, files, text map[string]string, copied func(int64)) error {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	for n := range text {
		names = append(names, n)
	}
	sort.Strings(names)
	made := map[string]bool{"/": true, ".": true}
	for _, n := range names {
		p := "/" + n
		if dir := path.Dir(p); !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		f, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if t, ok := text[n]; ok {
			_, err = f.Write([]byte(t))
		} else {
			err = copyPart(f, files[n], copied)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func copyPart(w io.Writer, src string, copied func(int64)) error {
	off, n := int64(0), int64(-1)
	if i := strings.LastIndexByte(src, '@'); i >= 0 {
		o, err := strconv.ParseInt(src[i+1:], 10, 64)
		if err == nil {
			src, off, n = src[:i], o, partMax
		}
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	buf := make([]byte, 8*mib)
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			copied(int64(k))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s at %d: %w", src, off, err)
		}
	}
}

// target says whether dst is a block device (and its size) or a new file.
func target(dst string) (size int64, dev bool, err error) {
	fi, err := os.Stat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, false, fmt.Errorf("%s exists and is not a block device: remove it, or give a new file name", dst)
	}
	if err := notMounted(dst); err != nil {
		return 0, false, err
	}
	f, err := os.Open(dst)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, false, fmt.Errorf("size of %s: %w", dst, err)
	}
	return n, true, nil
}

// notMounted refuses a device that has it or one of its partitions
// mounted (or in use as swap).
func notMounted(dev string) error {
	base := path.Base(dev)
	for _, f := range []string{"/proc/mounts", "/proc/swaps"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if m := path.Base(fields[0]); strings.HasPrefix(fields[0], "/dev/") && strings.HasPrefix(m, base) {
				return fmt.Errorf("%s is in use: %s is listed in %s; unmount it first", dev, fields[0], f)
			}
		}
	}
	return nil
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", p)
	}
	return fi.Size(), nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// FileSHA256 is the hex SHA-256 of a file (thaw.kernel='s digest).
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
