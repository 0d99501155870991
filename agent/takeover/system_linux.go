package takeover

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/nicmove"
	"github.com/thawlinux/thaw/agent/probe"
)

// Linux is the running kernel, through raw system calls.
type Linux struct {
	// Sys is the sysfs root ("/sys").
	Sys string
	dm  *dm.Control
	nic nicmove.Sys
}

// NewLinux returns the System of the running kernel.
func NewLinux() *Linux { return &Linux{Sys: "/sys"} }

// Close releases the device-mapper control node.
func (l *Linux) Close() {
	if l.dm != nil {
		l.dm.Close()
		l.dm = nil
	}
}

// writeSys writes one value to a sysfs attribute with plain system calls.
func writeSys(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// readSys reads a small sysfs attribute with plain system calls.
func readSys(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	b := make([]byte, 256)
	n, err := unix.Read(fd, b)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b[:max(n, 0)])), nil
}

// LoadModule loads a module image with init_module(2).
func (l *Linux) LoadModule(m Module) error {
	err := unix.InitModule(m.Image, m.Params)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if errors.Is(err, unix.EKEYREJECTED) {
		return fmt.Errorf("init_module %s (%d bytes): %w: this kernel loads only signed modules (lockdown or module.sig_enforce=1)", m.Name, len(m.Image), err)
	}
	if err != nil {
		return fmt.Errorf("init_module %s (%d bytes): %w", m.Name, len(m.Image), err)
	}
	return nil
}

// SetParam writes a loaded module's parameter.
func (l *Linux) SetParam(module, name, value string) error {
	return writeSys(filepath.Join(l.Sys, "module", module, "parameters", name), value)
}

// OnlineMemory onlines memory block n.
func (l *Linux) OnlineMemory(n uint64) error {
	p := fmt.Sprintf("/sys/devices/system/memory/memory%d/state", n)
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("memory block %d: %w", n, err)
	}
	if strings.TrimSpace(string(b)) == "online" {
		return nil
	}
	if err := os.WriteFile(p, []byte("online"), 0); err != nil {
		return fmt.Errorf("%s: online: %w", p, err)
	}
	return nil
}

// OnlineCPUs writes 1 to the online file of every CPU whose file says 0
// (cpu0 has none).
func (l *Linux) OnlineCPUs() (int, error) {
	files, err := filepath.Glob(filepath.Join(l.Sys, "devices/system/cpu/cpu[0-9]*/online"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return n, fmt.Errorf("cpu: %w", err)
		}
		if strings.TrimSpace(string(b)) != "0" {
			continue
		}
		if err := os.WriteFile(f, []byte("1"), 0); err != nil {
			return n, fmt.Errorf("%s: online: %w", f, err)
		}
		n++
	}
	return n, nil
}

// PCIPresent reports whether /sys/bus/pci/devices/ADDR exists.
func (l *Linux) PCIPresent(addr string) bool {
	var st unix.Stat_t
	return unix.Stat(filepath.Join(l.Sys, "bus/pci/devices", addr), &st) == nil
}

// Claimed reads /proc/iomem.
func (l *Linux) Claimed(start, end uint64, name string) (bool, error) {
	b, err := readAll("/proc/iomem")
	if err != nil {
		return false, err
	}
	es, err := probe.ParseIomem(bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	return probe.Covered(es, start, end, name), nil
}

// readAll reads a whole file with plain system calls.
func readAll(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n <= 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

// PCIRescan rescans every PCI bus.
func (l *Linux) PCIRescan() error { return writeSys(filepath.Join(l.Sys, "bus/pci/rescan"), "1") }

// Sleep sleeps with nanosleep(2): no runtime timer.
func (l *Linux) Sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// DM opens /dev/mapper/control once.
func (l *Linux) DM() (DM, error) {
	if l.dm == nil {
		c, err := dm.Open()
		if err != nil {
			return nil, err
		}
		l.dm = c
	}
	return l.dm, nil
}

// NIC is netlink and sysfs.
func (l *Linux) NIC() nicmove.Sys {
	if l.nic == nil {
		l.nic = nicmove.System()
	}
	return l.nic
}

// Disks lists the whole disks under /sys/block with their partitions and
// GPT GUIDs, but for those in skip. A disk without a node in /dev gets one
// in /dev/.thaw.
func (l *Linux) Disks(skip map[string]bool) ([]Disk, error) {
	dir := filepath.Join(l.Sys, "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "dm-") || strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "sr") {
			continue
		}
		d := Disk{Name: n, Parts: map[int]string{}}
		if d.Dev, err = readSys(filepath.Join(dir, n, "dev")); err != nil || skip[d.Dev] {
			continue
		}
		if size, _ := readSys(filepath.Join(dir, n, "size")); size == "0" {
			continue
		}
		subs, _ := os.ReadDir(filepath.Join(dir, n))
		for _, s := range subs {
			num, err := readSys(filepath.Join(dir, n, s.Name(), "partition"))
			if err != nil {
				continue
			}
			i, err := strconv.Atoi(num)
			if err != nil {
				continue
			}
			if dev, err := readSys(filepath.Join(dir, n, s.Name(), "dev")); err == nil {
				d.Parts[i] = dev
			}
		}
		node, err := l.node(n, d.Dev)
		if err != nil {
			continue
		}
		if md, err := probe.DescribeDisk(node); err == nil {
			d.GUID = md.DiskGUID
		}
		out = append(out, d)
	}
	return out, nil
}

// node returns a block device node for a disk: /dev/NAME when it is that
// device, else one made in /dev/.thaw.
func (l *Linux) node(name, dev string) (string, error) {
	want, ok := dm.ParseDev(dev)
	if !ok {
		return "", fmt.Errorf("bad dev %q", dev)
	}
	var st unix.Stat_t
	p := "/dev/" + name
	if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == want {
		return p, nil
	}
	os.MkdirAll("/dev/.thaw", 0o700)
	p = "/dev/.thaw/" + name
	unix.Unlink(p)
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(want)); err != nil {
		return "", fmt.Errorf("mknod %s: %w", p, err)
	}
	return p, nil
}
