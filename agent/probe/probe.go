package probe

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/memmap"
	"github.com/thawlinux/thaw/images/swsusp"
)

// prober reads one root's /proc and /sys.
type prober struct {
	root string
	live bool // root is "/": the running machine itself
}

// Probe reads the profile of the machine whose /proc and /sys lie under root
// ("/" or "" for this machine).
func Probe(root string) (*manifest.Manifest, error) {
	if root == "" {
		root = "/"
	}
	p := &prober{root: root, live: filepath.Clean(root) == "/"}
	m := &manifest.Manifest{
		Version: manifest.Version,
		Kind:    "probe",
		Created: time.Now().UTC().Format(time.RFC3339),
	}
	for _, step := range []func(*manifest.Manifest) error{
		p.host,
		p.kernel,
		p.firmware,
		p.e820,
		p.memory,
		p.cpu,
		p.pci,
		p.nics,
		p.disks,
		p.dm,
		p.mounts,
		p.swaps,
		p.iomem,
	} {
		if err := step(m); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
	}
	// The lists every manifest carries encode as [], not null, when empty.
	m.E820 = nonNil(m.E820)
	m.PCI = nonNil(m.PCI)
	m.NICs = nonNil(m.NICs)
	m.Disks = nonNil(m.Disks)
	m.Mounts = nonNil(m.Mounts)
	m.Swaps = nonNil(m.Swaps)
	return m, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// path is rel under the root.
func (p *prober) path(rel string) string { return filepath.Join(p.root, rel) }

// optional reads a file and trims it; a missing file reads as "".
func optional(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// attr reads a sysfs attribute that may be absent or unreadable (some need
// root, some fail on devices in odd states): any error reads as "".
func attr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.Trim(string(b), "\x00"))
}

// linkBase is the last element of a symlink's target ("" if no link).
func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// readDir lists a directory's names in order; a missing directory is empty.
func readDir(path string) ([]string, error) {
	ents, err := os.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// lines calls fn for each line of a file with its 1-based number.
func lines(path string, b []byte, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if err := fn(n, sc.Text()); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (p *prober) host(m *manifest.Manifest) error {
	if p.live {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		m.Hostname = h
		return nil
	}
	h, err := optional(p.path("proc/sys/kernel/hostname"))
	m.Hostname = h
	return err
}

// firmware tells UEFI from BIOS by /sys/firmware/efi, which a kernel
// started by UEFI firmware (or by its EFI stub) creates; without sysfs
// it says nothing.
func (p *prober) firmware(m *manifest.Manifest) error {
	if _, err := os.Stat(p.path("sys/firmware")); err != nil {
		return nil
	}
	m.Firmware = "bios"
	if _, err := os.Stat(p.path("sys/firmware/efi")); err == nil {
		m.Firmware = "uefi"
	}
	return nil
}

func (p *prober) kernel(m *manifest.Manifest) error {
	k := &m.Kernel
	if p.live {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return fmt.Errorf("uname: %w", err)
		}
		k.Release = unix.ByteSliceToString(u.Release[:])
		k.Version = unix.ByteSliceToString(u.Version[:])
	} else {
		var err error
		if k.Release, err = optional(p.path("proc/sys/kernel/osrelease")); err != nil {
			return err
		}
		if k.Version, err = optional(p.path("proc/sys/kernel/version")); err != nil {
			return err
		}
	}
	var err error
	if k.Cmdline, err = optional(p.path("proc/cmdline")); err != nil {
		return err
	}
	enforce, err := optional(p.path("sys/module/module/parameters/sig_enforce"))
	if err != nil {
		return err
	}
	lockdown, err := optional(p.path("sys/kernel/security/lockdown"))
	if err != nil {
		return err
	}
	k.SigEnforce, k.Lockdown = enforce == "Y", Lockdown(lockdown)
	if k.Release == "" {
		return nil
	}
	if k.VmlinuzSHA256, err = hashFile(p.path("boot/vmlinuz-" + k.Release)); err != nil {
		return err
	}
	if k.InitrdSHA256, err = hashFile(p.path("boot/initrd.img-" + k.Release)); err != nil {
		return err
	}
	for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
		h, err := hashFile(p.path(filepath.Join(dir, k.Release, "modules.alias")))
		if err != nil {
			return err
		}
		if h != "" {
			k.ModulesAliasSHA256 = h
			break
		}
	}
	return nil
}

// Lockdown reads the mode of /sys/kernel/security/lockdown, the one in
// brackets: "none [integrity] confidentiality" → integrity.
func Lockdown(s string) string {
	if _, rest, ok := strings.Cut(s, "["); ok {
		if mode, _, ok := strings.Cut(rest, "]"); ok {
			return mode
		}
	}
	return ""
}

// hashFile is the hex SHA-256 of a file, "" when it is missing or only root
// may read it (some distributions keep /boot/vmlinuz-* mode 0600).
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (p *prober) e820(m *manifest.Manifest) error {
	dir := p.path("sys/firmware/memmap")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	table, err := memmap.Read(dir)
	if err != nil {
		return err
	}
	var sw []swsusp.E820Entry
	for i, e := range table {
		if e.Type == 0 {
			return fmt.Errorf("%s: unknown memory type %q", filepath.Join(dir, strconv.Itoa(i), "type"), e.Name)
		}
		sw = append(sw, swsusp.E820Entry{Addr: e.Start, Size: e.End - e.Start, Type: e.Type})
	}
	m.E820 = append(m.E820, table...)
	if len(sw) > 0 {
		m.E820Digest = fmt.Sprintf("%#08x", swsusp.E820Checksum(sw))
	}
	return nil
}

func (p *prober) memory(m *manifest.Manifest) error {
	path := p.path("proc/meminfo")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	err = lines(path, b, func(_ int, line string) error {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			return nil
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("MemTotal %q: want N kB", strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("MemTotal: %w", err)
		}
		m.MemoryBytes = kb * 1024
		return nil
	})
	if err != nil {
		return err
	}
	if m.MemoryBytes == 0 {
		return fmt.Errorf("%s: no MemTotal", path)
	}
	bs, err := optional(p.path("sys/devices/system/memory/block_size_bytes"))
	if err != nil {
		return err
	}
	if bs != "" {
		if m.MemoryBlock, err = strconv.ParseUint(bs, 16, 64); err != nil {
			return fmt.Errorf("block_size_bytes %q: %w", bs, err)
		}
	}
	return nil
}

func (p *prober) cpu(m *manifest.Manifest) error {
	path := p.path("proc/cpuinfo")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	c := &m.CPU
	var flags string
	err = lines(path, b, func(_ int, line string) error {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "processor" {
			c.Count++
			return nil
		}
		if c.Count != 1 {
			return nil
		}
		var err error
		switch key {
		case "vendor_id":
			c.Vendor = val
		case "cpu family":
			c.Family, err = strconv.Atoi(val)
		case "model":
			c.Model, err = strconv.Atoi(val)
		case "stepping":
			c.Stepping, err = strconv.Atoi(val)
		case "model name":
			c.Name = val
		case "flags", "Features": // x86; arm64
			flags = val
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.Count == 0 {
		return fmt.Errorf("%s: no processor entries", path)
	}
	c.Flags = sortedSet(strings.Fields(flags))
	possible, err := optional(p.path("sys/devices/system/cpu/possible"))
	if err != nil {
		return err
	}
	c.Possible = CountCPUs(possible)
	return nil
}

// CountCPUs counts the CPUs of a kernel CPU list ("0-3,8").
func CountCPUs(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				continue
			}
		}
		n += b - a + 1
	}
	return n
}

// sortedSet sorts s and drops repeats; never nil.
func sortedSet(s []string) []string {
	out := []string{}
	sort.Strings(s)
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
