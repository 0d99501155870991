package dm

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

// Buffer sizes for the commands whose answer has no bound known in
// advance: start as libdevmapper does, double while the kernel reports
// DM_BUFFER_FULL_FLAG, give up past the limit.
const (
	firstBuffer = 16 << 10
	maxBuffer   = 64 << 20
)

// Info is the state of one device-mapper device (DM_DEV_STATUS).
type Info struct {
	Name, UUID      string
	Dev             uint64 // the device's own number, encoded as unix.Mkdev
	Suspended       bool
	ReadOnly        bool
	ActivePresent   bool // a live table is loaded
	InactivePresent bool // a table is loaded and waits for Resume
	OpenCount       int32
	TargetCount     uint32 // targets of the live table
}

// SuspendFlags modify Suspend.
type SuspendFlags uint32

const (
	// SkipLockfs suspends without freezing the filesystem on the device
	// (by default the kernel freezes it, as fsfreeze does).
	SkipLockfs SuspendFlags = flagSkipLockfs
	// NoFlush suspends without waiting for queued I/O: it stays queued
	// and goes to the table that is live at Resume.
	NoFlush SuspendFlags = flagNoFlush
)

// Control is an open /dev/mapper/control.
type Control struct {
	fd      int
	version [3]uint32
}

// Open opens the control node and checks that it speaks interface
// version 4.
func Open() (*Control, error) {
	fd, err := unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("dm: open %s: %w: device-mapper is not loaded (dm_mod) or devtmpfs is not mounted", ControlPath, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("dm: open %s: %w: run as root", ControlPath, err)
		}
		return nil, fmt.Errorf("dm: open %s: %w", ControlPath, err)
	}
	c := &Control{fd: fd}
	b := newRequest(headerSize, "", 0)
	if err := c.call(cmdVersion, b); err != nil {
		unix.Close(fd)
		return nil, opError("DM_VERSION", ControlPath, err)
	}
	for i := range c.version {
		c.version[i] = ne.Uint32(b[offVersion+4*i:])
	}
	return c, nil
}

// Version is the kernel's device-mapper interface version.
func (c *Control) Version() [3]uint32 { return c.version }

// Close closes the control node.
func (c *Control) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	if err != nil {
		return fmt.Errorf("dm: close %s: %w", ControlPath, err)
	}
	return nil
}

// call issues one ioctl, again if a signal interrupted it.
func (c *Control) call(req uintptr, b []byte) error {
	for {
		err := ioctl(c.fd, req, b)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// query issues a command whose answer may not fit, with a larger buffer
// each time the kernel says it did not.
func (c *Control) query(op string, req uintptr, name string, flags uint32) ([]byte, reply, error) {
	for size := firstBuffer; ; size *= 2 {
		b := newRequest(size, name, flags)
		if err := c.call(req, b); err != nil {
			return nil, reply{}, opError(op, name, err)
		}
		r := parseReply(b)
		if r.flags&flagBufferFull == 0 {
			return b, r, nil
		}
		clear(b)
		if size >= maxBuffer {
			return nil, reply{}, opError(op, name, fmt.Errorf("answer does not fit in %d bytes", size))
		}
	}
}

// device issues a command about one device that carries no payload.
func (c *Control) device(op string, req uintptr, name string, flags uint32) (Info, error) {
	if err := checkName(op, name); err != nil {
		return Info{}, err
	}
	b := newRequest(headerSize, name, flags)
	if err := c.call(req, b); err != nil {
		return Info{}, opError(op, name, err)
	}
	return parseReply(b).info(), nil
}

// List returns every device-mapper device (DM_LIST_DEVICES, then
// DM_DEV_STATUS for each), in the kernel's order. A device removed
// between the two is left out.
func (c *Control) List() ([]Info, error) {
	b, r, err := c.query("DM_LIST_DEVICES", cmdListDevices, "", 0)
	if err != nil {
		return nil, err
	}
	p, ok := r.payload(b)
	if !ok {
		return nil, opError("DM_LIST_DEVICES", "", errMalformed("data %d..%d in %d bytes", r.dataStart, r.dataSize, len(b)))
	}
	names, err := decodeNames(p)
	if err != nil {
		return nil, opError("DM_LIST_DEVICES", "", err)
	}
	out := make([]Info, 0, len(names))
	for _, n := range names {
		in, err := c.Info(n)
		if errors.Is(err, unix.ENXIO) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Info returns the state of the named device (DM_DEV_STATUS).
func (c *Control) Info(name string) (Info, error) {
	return c.device("DM_DEV_STATUS", cmdDevStatus, name, 0)
}

// Table returns the device's live table as the kernel prints it
// (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG), or none when no table is
// live. Tables may hold keys (crypt): the kernel is asked to wipe its
// copies, and the buffer here is cleared.
func (c *Control) Table(name string) ([]Target, error) {
	const op = "DM_TABLE_STATUS"
	if err := checkName(op, name); err != nil {
		return nil, err
	}
	b, r, err := c.query(op, cmdTableStatus, name, flagStatusTable|flagSecureData)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if r.flags&flagActivePresent == 0 || r.targetCount == 0 {
		return nil, nil
	}
	p, ok := r.payload(b)
	if !ok {
		return nil, opError(op, name, errMalformed("data %d..%d in %d bytes", r.dataStart, r.dataSize, len(b)))
	}
	t, err := decodeTable(p, r.targetCount)
	if err != nil {
		return nil, opError(op, name, err)
	}
	return t, nil
}

// Load loads t into the device's inactive slot (DM_TABLE_LOAD); Resume
// makes it live. readOnly loads a read-only table; a device's mode
// follows its live table, so pass Info.ReadOnly to keep it. The kernel
// opens every device t names and checks the targets here, so a wrong
// table fails now, before the live one is touched.
func (c *Control) Load(name string, t []Target, readOnly bool) error {
	const op = "DM_TABLE_LOAD"
	if err := checkName(op, name); err != nil {
		return err
	}
	if len(t) == 0 {
		return opError(op, name, errors.New("empty table"))
	}
	for i, x := range t {
		if err := x.check(); err != nil {
			return opError(op, name, fmt.Errorf("target %d: %w", i, err))
		}
	}
	flags := uint32(flagSecureData)
	if readOnly {
		flags |= flagReadOnly
	}
	b := encodeTable(name, flags, t)
	defer clear(b)
	if err := c.call(cmdTableLoad, b); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// The table text is not repeated here: it may hold a key.
			return opError(op, name, fmt.Errorf("%w: the kernel refused the table of %d targets (its log says why)", err, len(t)))
		}
		return opError(op, name, err)
	}
	return nil
}

// Suspend suspends the device (DM_DEV_SUSPEND with DM_SUSPEND_FLAG): I/O
// to it queues until Resume. Unless f has SkipLockfs, the filesystem on it
// is frozen first. Suspending a suspended device does nothing.
func (c *Control) Suspend(name string, f SuspendFlags) error {
	flags := flagSuspend | uint32(f)&(flagSkipLockfs|flagNoFlush)
	_, err := c.device("DM_DEV_SUSPEND", cmdDevSuspend, name, flags)
	return err
}

// Resume makes a loaded table live, if there is one, and resumes the
// device (DM_DEV_SUSPEND without DM_SUSPEND_FLAG): queued I/O goes to the
// new table and a frozen filesystem thaws. A device that is not suspended
// while a table waits is first suspended by the kernel, with a flush and
// a filesystem freeze; call Suspend first to choose otherwise.
func (c *Control) Resume(name string) error {
	_, err := c.device("DM_DEV_SUSPEND", cmdDevSuspend, name, 0)
	return err
}

// Create creates a device with no table (DM_DEV_CREATE); Load and
// ResumeUdev make it live. uuid may be empty.
func (c *Control) Create(name, uuid string) (Info, error) {
	const op = "DM_DEV_CREATE"
	if err := checkName(op, name); err != nil {
		return Info{}, err
	}
	if len(uuid) >= uuidLen || strings.IndexByte(uuid, 0) >= 0 {
		return Info{}, fmt.Errorf("dm: %s %q: bad uuid %q", op, name, uuid)
	}
	b := newRequest(headerSize, name, 0)
	copy(b[offUUID:offUUID+uuidLen-1], uuid)
	if err := c.call(cmdDevCreate, b); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return Info{}, fmt.Errorf("dm: %s %q: a device of that name or uuid exists: %w", op, name, err)
		}
		return Info{}, opError(op, name, err)
	}
	return parseReply(b).info(), nil
}

// Remove removes a device (DM_DEV_REMOVE): one this process created and
// could not finish. An open device is not removed (EBUSY).
func (c *Control) Remove(name string) error {
	_, err := c.device("DM_DEV_REMOVE", cmdDevRemove, name, 0)
	return err
}

// udevPrimarySource is libdevmapper's DM_UDEV_PRIMARY_SOURCE_FLAG in a udev
// cookie (flags << DM_UDEV_FLAGS_SHIFT), with a zero base: the cookie
// carries flags only and asks for no notification.
const udevPrimarySource = 0x0040 << 16

// ResumeUdev is Resume for a device this process created: the kernel's
// change event carries a udev cookie (DM_COOKIE) that says the event comes
// from the device's owner, as libdevmapper sends it without udev sync. The
// distribution's dm udev rules then treat the device as theirs: they make
// its /dev/mapper and /dev/disk links, and a later coldplug does not mark
// it as not ready for systemd. `dmsetup udevcomplete` accepts such a
// cookie without a semaphore.
func (c *Control) ResumeUdev(name string) error {
	const op = "DM_DEV_SUSPEND"
	if err := checkName(op, name); err != nil {
		return err
	}
	b := newRequest(headerSize, name, 0)
	ne.PutUint32(b[offEventNr:], udevPrimarySource)
	if err := c.call(cmdDevSuspend, b); err != nil {
		return opError(op, name, err)
	}
	return nil
}

// Deps returns the devices the live table uses (DM_TABLE_DEPS), or none
// when no table is live.
func (c *Control) Deps(name string) ([]uint64, error) {
	const op = "DM_TABLE_DEPS"
	if err := checkName(op, name); err != nil {
		return nil, err
	}
	b, r, err := c.query(op, cmdTableDeps, name, 0)
	if err != nil {
		return nil, err
	}
	if r.flags&flagActivePresent == 0 {
		return nil, nil
	}
	p, ok := r.payload(b)
	if !ok {
		return nil, opError(op, name, errMalformed("data %d..%d in %d bytes", r.dataStart, r.dataSize, len(b)))
	}
	d, err := decodeDeps(p)
	if err != nil {
		return nil, opError(op, name, err)
	}
	return d, nil
}

func checkName(op, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("dm: %s: no device name", op)
	case len(name) >= nameLen:
		return fmt.Errorf("dm: %s %q: name longer than %d bytes", op, name, nameLen-1)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("dm: %s %q: name contains a NUL", op, name)
		}
	}
	return nil
}

func errMalformed(format string, a ...any) error {
	return fmt.Errorf("malformed reply: "+format, a...)
}

// opError names the command and the device, and says what the kernel's
// errno means for device-mapper.
func opError(op, name string, err error) error {
	var what string
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ENXIO:
			what = "no such device-mapper device"
		case unix.EACCES, unix.EPERM:
			what = "device-mapper needs CAP_SYS_ADMIN"
		case unix.ENOTTY:
			what = "not a device-mapper control node"
		case unix.EBUSY:
			what = "device busy"
		case unix.ENOMEM:
			what = "the kernel is out of memory for the request"
		}
	}
	where := "dm: " + op
	if name != "" {
		where += " " + name
	}
	if what != "" {
		return fmt.Errorf("%s: %s: %w", where, what, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
