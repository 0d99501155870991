package dm

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// A fake kernel for the Control tests: it decodes each request the way
// drivers/md/dm-ioctl.c does (ctl_ioctl, copy_params, validate_params and
// the command functions) and writes the reply the same way. Its layout
// code is written out with literal offsets, independent of the package's
// constants, so that a wrong constant shows up as a failed test.

func le32(b []byte, off int) uint32 { return ne.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return ne.Uint64(b[off:]) }
func put32(b []byte, off int, v uint32) {
	ne.PutUint32(b[off:], v)
}
func put64(b []byte, off int, v uint64) {
	ne.PutUint64(b[off:], v)
}
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
func al8(n int) int { return (n + 7) / 8 * 8 }

type fakeDev struct {
	name, uuid           string
	dev                  uint64
	live, inactive       []Target
	liveRO, inactiveRO   bool
	hasLive, hasInactive bool
	suspended            bool
	lockfs               bool // suspended with the filesystem frozen
	noflush              bool
	open                 int32
	deps                 []uint64
}

type request struct {
	req uintptr
	buf []byte // the request as it was sent
}

type fakeKernel struct {
	t         *testing.T
	devs      []*fakeDev
	calls     []request
	fail      map[uintptr][]unix.Errno // errors to return, in turn, per command
	oldList   bool                     // a kernel before 4.41: no event_nr after names
	minor     uint32                   // interface minor answered
	loadCheck func(name string, t []Target) unix.Errno
	cookies   []uint32 // event_nr of each DM_DEV_SUSPEND
}

// devRemove is dev_remove.
func (k *fakeKernel) devRemove(p []byte) unix.Errno {
	for i, d := range k.devs {
		if d.name == cstr(p[48:176]) {
			if d.open > 0 {
				return unix.EBUSY
			}
			k.devs = append(k.devs[:i], k.devs[i+1:]...)
			return 0
		}
	}
	return unix.ENXIO
}

// devCreate is dev_create: a new device with the next minor of major 254.
func (k *fakeKernel) devCreate(p []byte) unix.Errno {
	name, uuid := cstr(p[48:176]), cstr(p[176:305])
	if name == "" {
		return unix.EINVAL
	}
	for _, d := range k.devs {
		if d.name == name || (uuid != "" && d.uuid == uuid) {
			return unix.EBUSY
		}
	}
	d := &fakeDev{name: name, uuid: uuid, dev: mkdev(254, uint32(len(k.devs)))}
	k.devs = append(k.devs, d)
	k.status(d, p)
	return 0
}

func (k *fakeKernel) find(name string) *fakeDev {
	for _, d := range k.devs {
		if d.name == name {
			return d
		}
	}
	return nil
}

func (k *fakeKernel) install(t *testing.T) *Control {
	t.Helper()
	k.t = t
	if k.minor == 0 {
		k.minor = 48
	}
	old := ioctl
	ioctl = k.ioctl
	t.Cleanup(func() { ioctl = old })
	return &Control{fd: 7, version: [3]uint32{4, k.minor, 0}}
}

func (k *fakeKernel) ioctl(fd int, req uintptr, user []byte) error {
	k.calls = append(k.calls, request{req, bytes.Clone(user)})
	if fd != 7 {
		k.t.Errorf("ioctl on fd %d", fd)
		return unix.EBADF
	}
	// _IOC_TYPE and the size the number encodes.
	if req>>8&0xff != 0xfd || req>>16&0x3fff != 312 || req>>30 != 3 {
		return unix.ENOTTY
	}
	cmd := req & 0xff
	// check_version
	v0, v1 := le32(user, 0), le32(user, 4)
	put32(user, 0, 4)
	put32(user, 4, k.minor)
	put32(user, 8, 0)
	if v0 != 4 || v1 > k.minor {
		return unix.EINVAL
	}
	if cmd == 0 {
		return nil
	}
	if errs := k.fail[req]; len(errs) > 0 {
		k.fail[req] = errs[1:]
		return errs[0]
	}
	noParams := cmd == 6 || cmd == 7
	// copy_params
	dataSize := int(le32(user, 12))
	if dataSize < 305 {
		return unix.EINVAL
	}
	if dataSize > len(user) {
		return unix.EFAULT
	}
	var p []byte
	if noParams {
		p = make([]byte, 312)
		copy(p, user[:305])
		dataSize = 305
		put32(p, 12, 305)
	} else {
		p = bytes.Clone(user[:dataSize])
	}
	secure := le32(p, 28)&(1<<15) != 0
	if secure {
		clear(user[:dataSize])
	}
	inputSize := dataSize
	// validate_params
	put32(p, 28, le32(p, 28)&^(1<<8|1<<13|1<<15|1<<16))
	name, uuid := cstr(p[48:176]), cstr(p[176:305])
	if cmd != 2 && cmd != 3 && name != "" && uuid != "" {
		return unix.EINVAL
	}
	put32(p, 12, 312)
	var err unix.Errno
	switch cmd {
	case 2:
		k.listDevices(p, inputSize)
	case 3:
		err = k.devCreate(p)
	case 4:
		err = k.devRemove(p)
	case 6:
		k.cookies = append(k.cookies, le32(p, 32))
		err = k.devSuspend(p)
	case 7:
		err = k.devStatus(p)
	case 9:
		err = k.tableLoad(p, inputSize)
	case 11:
		err = k.tableDeps(p, inputSize)
	case 12:
		err = k.tableStatus(p, inputSize)
	default:
		return unix.ENOTTY
	}
	if err != 0 {
		return err
	}
	copy(user, p[:le32(p, 12)])
	return nil
}

// findDevice is __find_device_hash_cell: it writes name and uuid back.
func (k *fakeKernel) findDevice(p []byte) *fakeDev {
	d := k.find(cstr(p[48:176]))
	if d == nil {
		return nil
	}
	clear(p[48:305])
	copy(p[48:], d.name)
	copy(p[176:], d.uuid)
	f := le32(p, 28) &^ (1 << 6)
	if d.hasInactive {
		f |= 1 << 6
	}
	put32(p, 28, f)
	return d
}

// devStatus is __dev_status.
func (k *fakeKernel) status(d *fakeDev, p []byte) {
	f := le32(p, 28) &^ (1<<1 | 1<<0 | 1<<5)
	if d.suspended {
		f |= 1 << 1
	}
	put64(p, 40, d.dev)
	put32(p, 24, uint32(d.open))
	put32(p, 20, 0)
	if d.hasLive {
		if d.liveRO {
			f |= 1 << 0
		}
		put32(p, 20, uint32(len(d.live)))
		f |= 1 << 5
	}
	put32(p, 28, f)
}

func (k *fakeKernel) devStatus(p []byte) unix.Errno {
	d := k.findDevice(p)
	if d == nil {
		return unix.ENXIO
	}
	k.status(d, p)
	return 0
}

func (k *fakeKernel) devSuspend(p []byte) unix.Errno {
	d := k.findDevice(p)
	if d == nil {
		return unix.ENXIO
	}
	f := le32(p, 28)
	if f&(1<<1) != 0 {
		if !d.suspended {
			d.suspended = true
			d.lockfs = f&(1<<10) == 0
			d.noflush = f&(1<<11) != 0
		}
	} else {
		if d.hasInactive {
			d.live, d.liveRO, d.hasLive = d.inactive, d.inactiveRO, true
			d.inactive, d.hasInactive = nil, false
			put32(p, 28, le32(p, 28)&^(1<<6))
		}
		d.suspended, d.lockfs, d.noflush = false, false, false
	}
	k.status(d, p)
	return 0
}

// resultBuffer is get_result_buffer: the payload starts at 312.
func resultBuffer(p []byte, size int) (int, int) {
	put32(p, 16, 312)
	if size > 312 {
		return 312, size - 312
	}
	return 312, 0
}

func (k *fakeKernel) listDevices(p []byte, size int) {
	needed := 0
	for _, d := range k.devs {
		if k.oldList {
			needed += 12 + len(d.name) + 1 + 7
		} else {
			needed += al8(12+len(d.name)+1) + 8
		}
	}
	start, n := resultBuffer(p, size)
	if n < needed {
		put32(p, 28, le32(p, 28)|1<<8)
		return
	}
	put32(p, 12, uint32(start+needed))
	nl, old := start, -1
	put64(p, nl, 0)
	for i, d := range k.devs {
		if old >= 0 {
			put32(p, old+8, uint32(nl-old))
		}
		put64(p, nl, d.dev)
		put32(p, nl+8, 0)
		copy(p[nl+12:], d.name)
		p[nl+12+len(d.name)] = 0
		old = nl
		end := al8(nl + 12 + len(d.name) + 1)
		if !k.oldList {
			put32(p, end, uint32(100+i)) // event_nr
			put32(p, end+4, 0)           // flags
			end += 8
		}
		nl = end
	}
}

func (k *fakeKernel) tableLoad(p []byte, size int) unix.Errno {
	d := k.findDevice(p)
	if d == nil {
		return unix.ENXIO
	}
	count := int(le32(p, 20))
	if count == 0 {
		return unix.EINVAL
	}
	// populate_table and next_target as in Linux 6.x.
	var t []Target
	spec, next, minSize := 0, int(le32(p, 16)), 312
	for i := 0; i < count; i++ {
		if next < minSize {
			k.t.Errorf("load: target %d: next %d overlaps (min %d)", i, next, minSize)
			return unix.EINVAL
		}
		remaining := size - spec
		if remaining-40 <= next {
			k.t.Errorf("load: target %d: spec extends beyond the parameters", i)
			return unix.EINVAL
		}
		if next%8 != 0 {
			k.t.Errorf("load: target %d: next %d not aligned", i, next)
			return unix.EINVAL
		}
		spec += next
		params := p[spec+40 : size]
		nul := bytes.IndexByte(params, 0)
		if nul < 0 {
			k.t.Errorf("load: target %d: parameters not terminated", i)
			return unix.EINVAL
		}
		minSize = 40 + nul + 1
		t = append(t, Target{
			Start:  le64(p, spec),
			Length: le64(p, spec+8),
			Type:   cstr(p[spec+24 : spec+40]),
			Params: string(params[:nul]),
		})
		next = int(le32(p, spec+20))
	}
	if k.loadCheck != nil {
		if e := k.loadCheck(d.name, t); e != 0 {
			return e
		}
	}
	d.inactive, d.hasInactive = t, true
	d.inactiveRO = le32(p, 28)&1 != 0
	put32(p, 28, le32(p, 28)|1<<6)
	k.status(d, p)
	return 0
}

func (k *fakeKernel) tableDeps(p []byte, size int) unix.Errno {
	d := k.findDevice(p)
	if d == nil {
		return unix.ENXIO
	}
	k.status(d, p)
	if !d.hasLive {
		return 0
	}
	start, n := resultBuffer(p, size)
	needed := 8 + 8*len(d.deps)
	if n < needed {
		put32(p, 28, le32(p, 28)|1<<8)
		return 0
	}
	put32(p, start, uint32(len(d.deps)))
	for i, x := range d.deps {
		put64(p, start+8+8*i, x)
	}
	put32(p, 12, uint32(start+needed))
	return 0
}

// tableStatus is table_status and retrieve_status.
func (k *fakeKernel) tableStatus(p []byte, size int) unix.Errno {
	d := k.findDevice(p)
	if d == nil {
		return unix.ENXIO
	}
	k.status(d, p)
	if !d.hasLive {
		return 0
	}
	if le32(p, 28)&(1<<4) == 0 {
		k.t.Errorf("table status without DM_STATUS_TABLE_FLAG")
	}
	start, n := resultBuffer(p, size)
	out, used := 0, 0
	for _, x := range d.live {
		remaining := n - out
		if remaining <= 40 {
			put32(p, 28, le32(p, 28)|1<<8)
			break
		}
		spec := start + out
		put32(p, spec+16, 0)
		put64(p, spec, x.Start)
		put64(p, spec+8, x.Length)
		copy(p[spec+24:spec+39], x.Type)
		out += 40
		remaining = n - out
		// the target's status function writes at most remaining bytes,
		// NUL included.
		s := x.Params
		if len(s)+1 > remaining {
			s = s[:remaining-1]
		}
		copy(p[start+out:], s)
		p[start+out+len(s)] = 0
		if len(s)+1 == remaining {
			put32(p, 28, le32(p, 28)|1<<8)
			break
		}
		out += len(s) + 1
		used = start + out
		out = al8(out)
		put32(p, spec+20, uint32(out))
	}
	if used != 0 {
		put32(p, 12, uint32(used))
	}
	put32(p, 20, uint32(len(d.live)))
	return 0
}
