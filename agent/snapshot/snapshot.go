package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl requests, include/uapi/linux/suspend_ioctls.h (magic '3').
const (
	ioFreeze          = 0x3301     // _IO('3', 1)
	ioUnfreeze        = 0x3302     // _IO('3', 2)
	ioAtomicRestore   = 0x3304     // _IO('3', 4)
	ioFree            = 0x3305     // _IO('3', 5)
	ioGetImageSize    = 0x8008330e // _IOR('3', 14, loff_t)
	ioPlatformSupport = 0x330f     // _IO('3', 15)
	ioCreateImage     = 0x40043311 // _IOW('3', 17, int)
	ioSetSwapArea     = 0x400c330d // _IOW('3', 13, struct resume_swap_area): 12 bytes, packed
	ioAllocSwapPage   = 0x80083314 // _IOR('3', 20, loff_t)
)

// Path is the snapshot device.
const Path = "/dev/snapshot"

// Device is an open /dev/snapshot.
type Device struct {
	fd     int
	frozen bool
	image  bool // an image exists (after CreateImage) until Free
	raw    bool // ioctls as raw system calls (see ioctl)
}

// Open opens the device for reading (capture) or writing (restore).
func Open(write bool) (*Device, error) {
	flag := syscall.O_RDONLY
	if write {
		flag = syscall.O_WRONLY
	}
	fd, err := syscall.Open(Path, flag|syscall.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT):
			return nil, fmt.Errorf("%s does not exist: the kernel lacks CONFIG_HIBERNATION_SNAPSHOT_DEV, or devtmpfs is not mounted", Path)
		case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("%s: %w: run as root; a kernel in lockdown (see /sys/kernel/security/lockdown) forbids hibernation", Path, err)
		case errors.Is(err, syscall.EBUSY):
			return nil, fmt.Errorf("%s is busy: another hibernation tool has it open", Path)
		}
		return nil, fmt.Errorf("open %s: %w", Path, err)
	}
	return &Device{fd: fd}, nil
}

// ioctl calls the device. With raw set it is a raw system call: the
// runtime is not told of it, so the calling thread keeps its P. A restore
// sets raw once GOMAXPROCS is 1 and the collector is off, so that no other
// thread can run Go code: with syscall.Syscall, the runtime may hand the
// only P to another thread during a long SNAPSHOT_FREEZE, the freezer then
// freezes that thread holding it, and this one waits for a P forever on
// its way back (seen once: a direct restore that never reached the kernel
// after "freezing and jumping into the image"). The capture keeps the
// ordinary call: other goroutines run there, and a raw call would leave
// a stop-the-world waiting on a thread that the freezer stops.
func (d *Device) ioctl(req uintptr, arg uintptr) syscall.Errno {
	if d.raw {
		_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, uintptr(d.fd), req, arg)
		return e
	}
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(d.fd), req, arg)
	return e
}

func errno(name string, e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", name, e)
}

// PlatformSupport tells the kernel whether to use the platform (ACPI S4)
// hooks.
func (d *Device) PlatformSupport(on bool) error {
	arg := uintptr(0)
	if on {
		arg = 1
	}
	return errno("SNAPSHOT_PLATFORM_SUPPORT", d.ioctl(ioPlatformSupport, arg))
}

// Freeze freezes user space (this process's other threads included).
func (d *Device) Freeze() error {
	if e := d.ioctl(ioFreeze, 0); e != 0 {
		return errno("SNAPSHOT_FREEZE", e)
	}
	d.frozen = true
	return nil
}

// CreateImage snapshots memory. It returns true in the capturing run and
// false when execution continues here after the image was restored.
func (d *Device) CreateImage() (inSuspend bool, err error) {
	var v int32 = -1
	if e := d.ioctl(ioCreateImage, uintptr(unsafe.Pointer(&v))); e != 0 {
		if e == syscall.ENOMEM {
			return false, fmt.Errorf("SNAPSHOT_CREATE_IMAGE: %w: too little free memory for the image (the kernel log says how many pages short); stop services or add swap", e)
		}
		return false, errno("SNAPSHOT_CREATE_IMAGE", e)
	}
	d.image = true
	return v == 1, nil
}

// ImageSize is the size in bytes of the image to read.
func (d *Device) ImageSize() (int64, error) {
	var n int64
	if e := d.ioctl(ioGetImageSize, uintptr(unsafe.Pointer(&n))); e != 0 {
		return 0, errno("SNAPSHOT_GET_IMAGE_SIZE", e)
	}
	return n, nil
}

// SetSwapArea names the swap that AllocSwapPage allocates from: the
// device rdev (as stat gives it) with its header at page offset (0 for a
// partition or an LV; swap_type_of's offset).
func (d *Device) SetSwapArea(rdev uint64, offset int64) error {
	var area [12]byte // struct resume_swap_area, packed
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	enc := minor&0xff | major<<8 | (minor&^0xff)<<12 // new_encode_dev
	binary.LittleEndian.PutUint64(area[0:], uint64(offset))
	binary.LittleEndian.PutUint32(area[8:], enc)
	if e := d.ioctl(ioSetSwapArea, uintptr(unsafe.Pointer(&area[0]))); e != 0 {
		return errno("SNAPSHOT_SET_SWAP_AREA", e)
	}
	return nil
}

// AllocSwapPage takes one free page of the swap set by SetSwapArea and
// returns its byte offset in that swap. The image the kernel made before
// knows nothing of it: the resumed kernel finds the page free.
func (d *Device) AllocSwapPage() (int64, error) {
	var off int64
	if e := d.ioctl(ioAllocSwapPage, uintptr(unsafe.Pointer(&off))); e != 0 {
		return 0, errno("SNAPSHOT_ALLOC_SWAP_PAGE", e)
	}
	return off, nil
}

// Read reads the next image page (the kernel hands out one page per call);
// 0 bytes at the end.
func (d *Device) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(d.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", Path, err)
		}
		return n, nil
	}
}

// Write writes one image page (restore).
func (d *Device) Write(p []byte) (int, error) {
	for {
		n, err := syscall.Write(d.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("write %s: %w", Path, err)
		}
		return n, nil
	}
}

// AtomicRestore jumps into the written image; it returns only on failure.
func (d *Device) AtomicRestore() error {
	return errno("SNAPSHOT_ATOMIC_RESTORE", d.ioctl(ioAtomicRestore, 0))
}

// Thaw frees a created image and unfreezes user space, whatever state the
// device is in; after a successful CreateImage, UNFREEZE alone would do
// nothing until the device is closed.
func (d *Device) Thaw() error {
	var errs []error
	if err := d.Free(); err != nil {
		errs = append(errs, err)
	}
	if d.frozen {
		if e := d.ioctl(ioUnfreeze, 0); e != 0 {
			errs = append(errs, errno("SNAPSHOT_UNFREEZE", e))
		}
		d.frozen = false
	}
	return errors.Join(errs...)
}

// Free releases the image (SNAPSHOT_FREE): kernel threads thaw, user
// space stays frozen until Thaw. A resumed capture fixes its devices in
// between.
func (d *Device) Free() error {
	if !d.image {
		return nil
	}
	d.image = false
	if e := d.ioctl(ioFree, 0); e != 0 {
		return errno("SNAPSHOT_FREE", e)
	}
	return nil
}

// Frozen reports whether user space is frozen by this device.
func (d *Device) Frozen() bool { return d.frozen }

// Close thaws and closes the device.
func (d *Device) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := d.Thaw()
	syscall.Close(d.fd)
	d.fd = -1
	return err
}

// Available says why hibernation cannot work here, or nil.
func Available() error {
	if _, err := os.Stat(Path); err != nil {
		return fmt.Errorf("%s is missing: the kernel lacks CONFIG_HIBERNATION_SNAPSHOT_DEV (or devtmpfs is not mounted)", Path)
	}
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		s := string(b)
		if !containsSel(s, "none") {
			return fmt.Errorf("the kernel is locked down (%s): it refuses hibernation and restores from user space; boot without lockdown (Secure Boot policy)", trim(s))
		}
	}
	if b, err := os.ReadFile("/sys/power/state"); err == nil && !containsWord(string(b), "disk") {
		return fmt.Errorf("/sys/power/state offers no \"disk\" (%s): hibernation is disabled in this kernel (nohibernate?)", trim(string(b)))
	}
	return nil
}
