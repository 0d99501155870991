package restore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/coldplug"
	"github.com/thawlinux/thaw/agent/physmem"
	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/agent/snapshot"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/kexec"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/dhcp"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// System is the real machine. log may be nil (no remote log).
func System(log Log) Env {
	return Env{
		Drivers:  sysDrivers{},
		Net:      sysNet{},
		Store:    Files{},
		Machine:  sysMachine{},
		Disks:    sysDisks{},
		Snapshot: sysSnapshot{},
		Kexec:    sysKexec{},
		Firmware: sysFirmware{},
		Stage2:   sysStage2{},
		Stick:    &sysStick{},
		Log:      log,
	}
}

type sysDrivers struct{}

func (sysDrivers) Coldplug(logf func(string, ...any)) (*coldplug.Result, error) {
	return coldplug.Run(coldplug.Config{Logf: logf})
}

func (sysDrivers) Release(addr string) (string, error) { return coldplug.Release("/sys", addr) }

type sysNet struct{}

func (sysNet) DHCP(ctx context.Context, iface string, logf func(string, ...any)) (*dhcp.Lease, error) {
	return dhcp.Configure(ctx, dhcp.Config{Iface: iface, Timeout: 10 * time.Second, Retries: 4, LinkWait: 10 * time.Second, Logf: logf})
}

// Files is a Store of local files and http(s) URLs.
type Files struct{}

// Open opens ref: an http:// or https:// URL (range requests, with the
// limits of opt), or a file.
func (Files) Open(ctx context.Context, ref string, opt httpra.Options) (Blob, error) {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return httpra.Open(ctx, ref, opt)
	}
	if path, ok := strings.CutPrefix(ref, bootparam.SchemeFile); ok {
		return openLocal(path)
	}
	return openFile(ref)
}

// openFile opens a local file as a Blob.
func openFile(path string) (Blob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileBlob{f, st.Size()}, nil
}

type fileBlob struct {
	*os.File
	size int64
}

func (f fileBlob) Size() int64 { return f.size }

// sysStick is the real stick: found in /sys, mounted with the vfat
// driver.
type sysStick struct{ s *stick.Stick }

func (k *sysStick) Mount(ctx context.Context, rescan func()) (disk, dev string, err error) {
	s, err := stick.Find(ctx, "/sys", stickWait, rescan)
	if err != nil {
		return "", "", err
	}
	for _, m := range []string{"vfat", "nls_cp437", "nls_ascii", "nls_utf8"} {
		if err := coldplug.Load(m); err != nil {
			return "", "", fmt.Errorf("load %s for the stick's FAT filesystem: %w", m, err)
		}
	}
	if err := s.Mount(StickDir, StickESPDir); err != nil {
		s.Unmount()
		return "", "", err
	}
	k.s = s
	return s.Disk, s.Data, nil
}

func (k *sysStick) WriteLog(name string, b []byte) (string, error) {
	if k.s == nil {
		return "", fmt.Errorf("no stick mounted")
	}
	return k.s.WriteLog(name, b)
}

func (k *sysStick) Unmount() {
	if k.s != nil {
		k.s.Unmount()
	}
}

type sysMachine struct{}

func (sysMachine) Probe() (*manifest.Manifest, error) { return probe.Probe("/") }

func (sysMachine) HasData(name string) bool { return PathHasData("/dev/" + name) }

// PathHasData reports whether the first MiB of the file or device at path
// holds anything (a partition table, a filesystem); an unreadable one
// counts as holding data.
func PathHasData(path string) bool {
	d, err := blockdev.Open(path, false)
	if err != nil {
		return true
	}
	defer d.Close()
	return devHasData(d)
}

type sysDisks struct{}

func (sysDisks) Open(ref string) (*blockdev.Dev, error) { return blockdev.Open(ref, true) }

type sysSnapshot struct{}

func (sysSnapshot) Available() error { return snapshot.Available() }

func (sysSnapshot) Restore(image io.Reader, platform bool, logf func(string, ...any), before func()) error {
	return snapshot.RestoreWith(image, platform, logf, before)
}

type sysKexec struct{}

func (sysKexec) Load(img kexec.Image) error { return kexec.FileLoad(img) }

func (sysKexec) LoadWithE820(img kexec.Image, e820 []manifest.E820Entry, logf func(string, ...any)) error {
	_, err := kexec.LoadWithE820(img, e820, kexec.Options{Logf: logf})
	return err
}

func (sysKexec) Exec() error { return kexec.Exec() }

type sysFirmware struct{}

func (sysFirmware) Read(addr, size uint64) ([]byte, error) { return physmem.Read(addr, size) }
func (sysFirmware) Write(addr uint64, b []byte) error      { return physmem.Write(addr, b) }

type sysStage2 struct{}

// Pack writes the running agent's initramfs (its root) with the state and
// uinit.flags added: stage 2 must start "thaw agent" whatever the first
// stage's init did with its own copy.
func (sysStage2) Pack(st *stage2.State) (string, error) {
	js, err := stage2.Marshal(st)
	if err != nil {
		return "", err
	}
	path := "/tmp/stage2.cpio"
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = stage2.Pack(bw, "/", map[string][]byte{stage2.StatePath: js, "/etc/uinit.flags": []byte(`"agent"`)})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("stage 2 initramfs %s: %w", path, err)
	}
	return path, nil
}

func (sysStage2) Load() (*stage2.State, error) { return stage2.Load(stage2.StatePath) }

// agentKernelCopy is where mkinitramfs puts the agent kernel; a fetched
// one goes under /tmp, which the stage-2 initramfs leaves out.
const (
	agentKernelCopy    = "/boot/vmlinuz"
	agentKernelFetched = "/tmp/agent-vmlinuz"
)

func (sysStage2) Kernel() string {
	if _, err := os.Stat(agentKernelCopy); err == nil {
		return agentKernelCopy
	}
	return ""
}

func (sysStage2) KeepKernel(r io.Reader) (string, error) {
	f, err := os.OpenFile(agentKernelFetched, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(agentKernelFetched)
		return "", err
	}
	return agentKernelFetched, f.Close()
}

func (sysStage2) DropKernel(path string) { os.Remove(path) }
