package restore

import (
	"context"
	"io"

	"github.com/thawlinux/thaw/agent/coldplug"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/kexec"
	"github.com/thawlinux/thaw/netfetch/dhcp"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// Env is the machine the pipeline runs on: every system call of a stage
// goes through one of these. System returns the real ones; tests give
// fakes. A stage that needs a nil one fails naming it.
type Env struct {
	Drivers  Drivers
	Net      Net
	Store    Store
	Machine  Machine
	Disks    Disks
	Snapshot Snapshot
	Kexec    Kexec
	Firmware Firmware
	Stage2   Stage2
	Stick    Stick
	Log      Log
}

// Stick is the thaw stick (thaw media usb): mounted read-only, and
// written only for the agent's log under thaw-logs/.
type Stick interface {
	// Mount finds the stick, calling rescan while it waits for it to
	// appear, and mounts its partitions read-only (the data partition
	// on StickDir). It returns the whole disk's name under /dev and the
	// data partition's device.
	Mount(ctx context.Context, rescan func()) (disk, dev string, err error)
	// WriteLog writes b as thaw-logs/name and returns its path on the
	// stick.
	WriteLog(name string, b []byte) (string, error)
	Unmount()
}

// Drivers loads the agent kernel's drivers and lets devices go.
type Drivers interface {
	Coldplug(logf func(string, ...any)) (*coldplug.Result, error)
	// Release unbinds the PCI device at addr from this kernel's driver
	// (for the image kernel's own) and returns the driver's name.
	Release(addr string) (string, error)
}

// Net brings the network up.
type Net interface {
	DHCP(ctx context.Context, iface string, logf func(string, ...any)) (*dhcp.Lease, error)
}

// Blob is an open bundle file: a local file or HTTP(S) range requests.
type Blob interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Store opens bundles.
type Store interface {
	Open(ctx context.Context, ref string, opt httpra.Options) (Blob, error)
}

// Machine is this machine's profile.
type Machine interface {
	Probe() (*manifest.Manifest, error)
	// HasData reports whether the disk /dev/NAME holds anything in its
	// first MiB; an unreadable disk counts as holding data.
	HasData(name string) bool
}

// Disks opens disks (a path, or PATH#N for a GPT partition) for writing.
type Disks interface {
	Open(ref string) (*blockdev.Dev, error)
}

// Snapshot is this kernel's /dev/snapshot.
type Snapshot interface {
	Available() error
	// Restore writes the image and jumps into it; it returns only on
	// failure. beforeFreeze runs once the image is in, before the
	// freeze.
	Restore(image io.Reader, platform bool, logf func(string, ...any), beforeFreeze func()) error
}

// Kexec loads and boots kernels.
type Kexec interface {
	Load(img kexec.Image) error
	// LoadWithE820 loads img to run with the source's memory map.
	LoadWithE820(img kexec.Image, e820 []manifest.E820Entry, logf func(string, ...any)) error
	// Exec boots what was loaded; it returns only on failure.
	Exec() error
}

// Firmware reads and writes physical memory (the source's firmware
// ranges, in stage 2).
type Firmware interface {
	Read(addr, size uint64) ([]byte, error)
	Write(addr uint64, b []byte) error
}

// Stage2 carries the first stage's decisions across the agent's kexec of
// itself.
type Stage2 interface {
	// Pack writes the agent's own initramfs with the state added and
	// returns its path.
	Pack(state *stage2.State) (string, error)
	// Load reads the state in the second stage.
	Load() (*stage2.State, error)
	// Kernel is the agent kernel the initramfs carries, or "".
	Kernel() string
	// KeepKernel stores a fetched agent kernel and returns its path;
	// DropKernel removes it.
	KeepKernel(r io.Reader) (string, error)
	DropKernel(path string)
}

// Log is the remote log (thaw.log=).
type Log interface {
	// Start begins sending the console to url, from its first line.
	Start(ctx context.Context, url, token string)
	// Record sends one machine-readable line: "thaw-KIND-json" and v.
	Record(kind string, v any)
	// Flush waits (bounded) until every line was sent.
	Flush()
	// Stop flushes and stops the sender: no goroutine of it runs after.
	Stop()
}
