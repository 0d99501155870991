package prepare

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/manifest"
)

// Entry is one partition that thaw prepare puts behind device-mapper.
type Entry struct {
	Name     string // the dm device: thaw-root, thaw-swap0, thaw-boot
	PartUUID string // how the initramfs finds the partition
	Dev      string // its kernel name when prepared: vda1
	Use      string // what it carries: "/", "swap", "/boot"
}

// Host is the system thaw prepare works on, behind the few calls it makes.
type Host struct {
	Root       string                                  // "/" on a live system
	Probe      func() (*manifest.Manifest, error)      // the running system
	Run        func(name string, args ...string) error // update-initramfs
	Executable string                                  // the thaw binary to install
	Logf       func(format string, a ...any)
}

func (h *Host) path(rel string) string { return filepath.Join(h.Root, rel) }

// resolve follows a /dev path under Root to a kernel device name (vda2),
// or returns "".
func (h *Host) resolve(spec string) string {
	if !strings.HasPrefix(spec, "/dev/") {
		return ""
	}
	p, err := filepath.EvalSymlinks(h.path(spec))
	if err != nil {
		return strings.TrimPrefix(spec, "/dev/")
	}
	return filepath.Base(p)
}

func (h *Host) logf(format string, a ...any) {
	if h.Logf != nil {
		h.Logf(format, a...)
	}
}

// Status is what Check finds.
type Status struct {
	Movable   bool     `json:"movable"`
	Why       []string `json:"why,omitempty"`     // what keeps it from moving
	Wrapped   []string `json:"wrapped,omitempty"` // thaw-* devices in use
	Installed bool     `json:"installed"`         // thaw prepare's files are in place
	Entries   []Entry  `json:"entries,omitempty"` // what Install would wrap, or has
}

// Check reports whether the running system can move to another disk
// controller: every mounted filesystem and active swap on a disk reaches
// it through device-mapper.
func Check(h *Host) (*Status, error) {
	m, err := h.Probe()
	if err != nil {
		return nil, err
	}
	st := &Status{Movable: true}
	for _, d := range m.Disks {
		if ok, why := plan.Movable(m, d); !ok {
			st.Movable = false
			st.Why = append(st.Why, why...)
		}
	}
	for _, d := range m.DM {
		if strings.HasPrefix(d.Name, "thaw-") && inUse(m, d) {
			st.Wrapped = append(st.Wrapped, d.Name)
		}
	}
	sort.Strings(st.Wrapped)
	_, err = os.Stat(h.path(ConfPath))
	st.Installed = err == nil
	if st.Installed {
		b, _ := os.ReadFile(h.path(ConfPath))
		st.Entries = parseConf(string(b))
	} else if es, err := entries(m); err == nil {
		st.Entries = es
	}
	return st, nil
}

// inUse: a filesystem is mounted from the device or it is an active swap.
func inUse(m *manifest.Manifest, d manifest.DMDevice) bool {
	_, minor, _ := strings.Cut(d.Dev, ":")
	for _, mt := range m.Mounts {
		if mt.Dev == d.Dev {
			return true
		}
	}
	for _, s := range m.Swaps {
		if p := path.Base(s.Path); p == "dm-"+minor || p == d.Name {
			return true
		}
	}
	return false
}

// entries lists the partitions to wrap: each partition of a disk that
// carries a mounted filesystem or an active swap. Mounts below the first
// on a partition (bind mounts) count once.
func entries(m *manifest.Manifest) ([]Entry, error) {
	type part struct {
		p    manifest.Partition
		disk manifest.Disk
	}
	byDev, byName := map[string]part{}, map[string]part{}
	for _, d := range m.Disks {
		if d.Dev != "" {
			byDev[d.Dev] = part{manifest.Partition{Name: d.Name}, d}
		}
		for _, p := range d.Partitions {
			if p.Dev != "" {
				byDev[p.Dev] = part{p, d}
			}
			if p.Name != "" {
				byName[p.Name] = part{p, d}
			}
		}
	}
	var out []Entry
	seen, names := map[string]bool{}, map[string]bool{}
	add := func(pt part, name, use string) error {
		if seen[pt.p.Name] {
			return nil
		}
		seen[pt.p.Name] = true
		if pt.p.Name == pt.disk.Name {
			return fmt.Errorf("%s is on the whole disk /dev/%s, with no partition table: thaw prepare finds partitions by PARTUUID", use, pt.disk.Name)
		}
		if pt.p.PartUUID == "" {
			return fmt.Errorf("partition /dev/%s (%s) has no PARTUUID: its disk %s has no partition table thaw can name it by", pt.p.Name, use, pt.disk.Name)
		}
		// Two mount points can map to one name (/ and /root, /a b and
		// /a-b): a suffix keeps each device its own.
		base := name
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		if len(name) > 127 {
			return fmt.Errorf("%s: the device-mapper name %s is longer than 127 bytes", use, name)
		}
		names[name] = true
		out = append(out, Entry{Name: name, PartUUID: pt.p.PartUUID, Dev: pt.p.Name, Use: use})
		return nil
	}
	mounts := append([]manifest.Mount(nil), m.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].Target) < len(mounts[j].Target) })
	for _, mt := range mounts {
		pt, ok := byDev[mt.Dev]
		if !ok {
			continue
		}
		if err := add(pt, dmName(mt.Target), mt.Target); err != nil {
			return nil, err
		}
	}
	n := 0
	for _, s := range m.Swaps {
		pt, ok := byName[path.Base(s.Path)]
		if !ok {
			continue
		}
		if err := add(pt, fmt.Sprintf("thaw-swap%d", n), "swap"); err != nil {
			return nil, err
		}
		n++
	}
	return out, nil
}

// dmName names the device for a mount point: / is thaw-root, /boot/efi
// is thaw-boot-efi.
func dmName(target string) string {
	if target == "/" {
		return "thaw-root"
	}
	var b strings.Builder
	b.WriteString("thaw")
	for _, c := range target {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// fstabEntry is one line of /etc/fstab.
type fstabEntry struct{ spec, file, vfstype, options string }

func parseFstab(s string) []fstabEntry {
	var out []fstabEntry
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		for len(f) < 4 {
			f = append(f, "")
		}
		out = append(out, fstabEntry{unescape(f[0]), unescape(f[1]), f[2], f[3]})
	}
	return out
}

// unescape undoes fstab's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// byContent: an fstab source that names the filesystem or swap by what is
// on it, so that it finds the thaw-* device as well as the partition.
func byContent(spec string) bool {
	for _, p := range []string{"UUID=", "LABEL=", "/dev/disk/by-uuid/", "/dev/disk/by-label/"} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

// checkFstab refuses a wrapped filesystem or swap (other than the root,
// which the initramfs mounts) that fstab names by its partition: once the
// thaw-* device holds the partition, that mount or swapon would fail at
// boot. resolve turns a /dev path into a kernel name (vda2), or "".
func checkFstab(fstab string, es []Entry, m *manifest.Manifest, resolve func(string) string) []plan.Refusal {
	partUUID := map[string]string{} // kernel name → PARTUUID
	for _, d := range m.Disks {
		for _, p := range d.Partitions {
			partUUID[p.Name] = p.PartUUID
		}
	}
	var rs []plan.Refusal
	for _, e := range es {
		if e.Use == "/" {
			continue
		}
		for _, f := range parseFstab(fstab) {
			if byContent(f.spec) {
				continue
			}
			what := "mount"
			if e.Use == "swap" {
				// A swap line is this partition's when its source
				// names it.
				if f.vfstype != "swap" || !(strings.EqualFold(f.spec, "PARTUUID="+partUUID[e.Dev]) || resolve(f.spec) == e.Dev) {
					continue
				}
				what = "swapon"
			} else if f.file != e.Use {
				continue
			}
			rs = append(rs, plan.Refusal{Check: "fstab",
				Reason: fmt.Sprintf("/etc/fstab names %s by its partition (%s): once /dev/%s sits behind %s, that %s would fail at boot", e.Use, f.spec, e.Dev, e.Name, what),
				Hint:   fmt.Sprintf("name it by UUID= in /etc/fstab (blkid /dev/%s shows it), then run thaw prepare again", e.Dev)})
		}
	}
	return rs
}

// Install makes the system movable from its next boot: it checks
// everything first, then writes the files and rebuilds the initramfs. It
// is idempotent; changed is false when everything was already in place.
func Install(h *Host) (es []Entry, changed bool, err error) {
	m, err := h.Probe()
	if err != nil {
		return nil, false, err
	}
	var rs []plan.Refusal
	if os.Geteuid() != 0 && h.Root == "/" {
		rs = append(rs, plan.Refusal{Check: "root", Reason: "thaw prepare changes /etc and the initramfs", Hint: "run it as root"})
	}
	es, err = entries(m)
	if err != nil {
		rs = append(rs, plan.Refusal{Check: "partition", Reason: err.Error(), Hint: "put that filesystem on a GPT or MBR partition, or on LVM"})
	}
	if _, err := os.Stat(h.path("usr/sbin/update-initramfs")); err != nil {
		rs = append(rs, plan.Refusal{Check: "initramfs", Reason: "this server's initramfs is not built by initramfs-tools (no update-initramfs): thaw prepare has no dracut module yet",
			Hint: "put root and swap on LVM instead, or install initramfs-tools"})
	}
	fstab, err := os.ReadFile(h.path("etc/fstab"))
	if err != nil {
		rs = append(rs, plan.Refusal{Check: "fstab", Reason: err.Error(), Hint: "thaw prepare needs the server's /etc/fstab"})
	}
	rs = append(rs, checkFstab(string(fstab), es, m, h.resolve)...)
	bin, err := os.ReadFile(h.Executable)
	if err != nil {
		rs = append(rs, plan.Refusal{Check: "binary", Reason: fmt.Sprintf("read the thaw binary: %v", err), Hint: "run thaw from a readable file"})
	}
	if len(rs) > 0 {
		return es, false, &plan.Refused{Title: "thaw prepare refused", Refusals: rs}
	}
	// What an earlier run wrapped is on thaw-* devices now and no longer
	// shows as a partition: it stays in the list.
	if old, err := os.ReadFile(h.path(ConfPath)); err == nil {
		es = mergeEntries(parseConf(string(old)), es)
	}
	if len(es) == 0 {
		h.logf("nothing sits on a plain partition: no change")
		return nil, false, nil
	}
	files := []struct {
		rel  string
		body []byte
		mode fs.FileMode
	}{
		{BinaryPath, bin, 0o755},
		{ConfPath, []byte(conf(es)), 0o644},
		{RulesPath, []byte(rules), 0o644},
		{ScriptPath, []byte(script), 0o755},
		{HookPath, []byte(hook), 0o755},
	}
	for _, f := range files {
		p := h.path(f.rel)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.body) {
			continue
		}
		if !changed {
			// The initramfs no longer matches until it is rebuilt.
			if err := os.Remove(h.path(DonePath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return es, false, err
			}
		}
		if err := writeAtomic(p, f.body, f.mode); err != nil {
			return es, changed, err
		}
		h.logf("wrote /%s", f.rel)
		changed = true
	}
	if _, err := os.Stat(h.path(DonePath)); err == nil && !changed {
		h.logf("already prepared: nothing changed")
		return es, false, nil
	}
	h.logf("update-initramfs -u -k all")
	if err := h.Run("update-initramfs", "-u", "-k", "all"); err != nil {
		return es, true, fmt.Errorf("update-initramfs: %w (the files are in place: run thaw prepare again, or thaw prepare --undo)", err)
	}
	if err := writeAtomic(h.path(DonePath), []byte("the initramfs holds thaw prepare's files\n"), 0o644); err != nil {
		return es, true, err
	}
	return es, true, nil
}

// mergeEntries keeps the old entries (by PARTUUID) and adds the new ones.
func mergeEntries(old, add []Entry) []Entry {
	out := append([]Entry(nil), old...)
	have, names := map[string]bool{}, map[string]bool{}
	for _, e := range old {
		have[e.PartUUID], names[e.Name] = true, true
	}
	for _, e := range add {
		if have[e.PartUUID] {
			continue
		}
		base := e.Name
		for n := 2; names[e.Name]; n++ {
			e.Name = fmt.Sprintf("%s-%d", base, n)
		}
		names[e.Name] = true
		out = append(out, e)
	}
	return out
}

// Undo removes what Install wrote and rebuilds the initramfs. The running
// system keeps its thaw-* devices until the next boot.
func Undo(h *Host) (removed []string, err error) {
	if os.Geteuid() != 0 && h.Root == "/" {
		return nil, &plan.Refused{Title: "thaw prepare refused", Refusals: []plan.Refusal{{Check: "root", Reason: "thaw prepare --undo changes /etc and the initramfs", Hint: "run it as root"}}}
	}
	for _, rel := range Installed {
		err := os.Remove(h.path(rel))
		switch {
		case err == nil:
			removed = append(removed, "/"+rel)
			h.logf("removed /%s", rel)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return removed, fmt.Errorf("remove /%s: %w", rel, err)
		}
	}
	if err := os.Remove(h.path(GrubCPUs)); err == nil {
		removed = append(removed, "/"+GrubCPUs)
		h.logf("removed /%s; update-grub", GrubCPUs)
		if err := h.Run("update-grub"); err != nil {
			return removed, fmt.Errorf("update-grub: %w", err)
		}
	}
	if _, err := os.Stat(h.path(DonePath)); len(removed) == 0 && err != nil {
		h.logf("not prepared: nothing to undo")
		return nil, nil
	}
	h.logf("update-initramfs -u -k all")
	if err := h.Run("update-initramfs", "-u", "-k", "all"); err != nil {
		return removed, fmt.Errorf("update-initramfs: %w (run thaw prepare --undo again)", err)
	}
	if err := os.Remove(h.path(DonePath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, err
	}
	return removed, nil
}

// writeAtomic writes a file through a temporary beside it, synced, then
// renamed over the old one.
func writeAtomic(p string, b []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".thaw-new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	f.Close()
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
