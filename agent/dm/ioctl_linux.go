package dm

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// struct dm_ioctl, include/uapi/linux/dm-ioctl.h: 312 bytes, the fields
// at these offsets, in native byte order.
const (
	offVersion     = 0   // __u32 version[3]
	offDataSize    = 12  // __u32 data_size: the whole buffer, this struct included
	offDataStart   = 16  // __u32 data_start: offset of the payload from this struct
	offTargetCount = 20  // __u32 target_count
	offOpenCount   = 24  // __s32 open_count
	offFlags       = 28  // __u32 flags
	offEventNr     = 32  // __u32 event_nr
	offPadding     = 36  // __u32 padding
	offDev         = 40  // __u64 dev
	offName        = 48  // char name[DM_NAME_LEN]
	offUUID        = 176 // char uuid[DM_UUID_LEN]
	offData        = 305 // char data[7]
	headerSize     = 312 // sizeof(struct dm_ioctl)

	nameLen = 128 // DM_NAME_LEN
	uuidLen = 129 // DM_UUID_LEN
)

// struct dm_target_spec: sector_start u64, length u64, status s32, next
// u32, target_type[16], then the NUL-terminated parameters, padded so the
// next spec starts 8-byte aligned.
const (
	specStart  = 0
	specLength = 8
	specStatus = 16
	specNext   = 20
	specType   = 24
	specSize   = 40
	typeLen    = 16 // DM_MAX_TYPE_NAME
)

// struct dm_name_list: dev u64, next u32 (from the start of this record
// to the next; 0 ends the list), name NUL-terminated. Kernels since
// interface 4.41 put event_nr and flags (and with DM_UUID_FLAG a uuid)
// after the name; next steps over them.
const (
	nlDev  = 0
	nlNext = 8
	nlName = 12
)

// The interface version sent: major 4, the oldest minor. The kernel
// accepts any request whose major matches and whose minor is not newer
// than its own, and answers with its version.
var version = [3]uint32{4, 0, 0}

// Commands: _IOWR(DM_IOCTL 0xfd, nr, struct dm_ioctl) =
// 3<<30 | 312<<16 | 0xfd<<8 | nr.
const (
	ioctlBase = 3<<30 | headerSize<<16 | 0xfd<<8

	cmdVersion     = ioctlBase + 0  // DM_VERSION
	cmdListDevices = ioctlBase | 2  // DM_LIST_DEVICES
	cmdDevCreate   = ioctlBase | 3  // DM_DEV_CREATE
	cmdDevRemove   = ioctlBase | 4  // DM_DEV_REMOVE
	cmdDevSuspend  = ioctlBase | 6  // DM_DEV_SUSPEND: suspend or resume
	cmdDevStatus   = ioctlBase | 7  // DM_DEV_STATUS
	cmdTableLoad   = ioctlBase | 9  // DM_TABLE_LOAD
	cmdTableDeps   = ioctlBase | 11 // DM_TABLE_DEPS
	cmdTableStatus = ioctlBase | 12 // DM_TABLE_STATUS
)

// Flags of struct dm_ioctl.
const (
	flagReadOnly        = 1 << 0  // DM_READONLY_FLAG, in/out
	flagSuspend         = 1 << 1  // DM_SUSPEND_FLAG, in/out
	flagPersistentDev   = 1 << 3  // DM_PERSISTENT_DEV_FLAG, in
	flagStatusTable     = 1 << 4  // DM_STATUS_TABLE_FLAG, in: table text, not status
	flagActivePresent   = 1 << 5  // DM_ACTIVE_PRESENT_FLAG, out
	flagInactivePresent = 1 << 6  // DM_INACTIVE_PRESENT_FLAG, out
	flagBufferFull      = 1 << 8  // DM_BUFFER_FULL_FLAG, out
	flagSkipLockfs      = 1 << 10 // DM_SKIP_LOCKFS_FLAG, in
	flagNoFlush         = 1 << 11 // DM_NOFLUSH_FLAG, in
	flagQueryInactive   = 1 << 12 // DM_QUERY_INACTIVE_TABLE_FLAG, in
	flagUeventGenerated = 1 << 13 // DM_UEVENT_GENERATED_FLAG, out
	flagUUID            = 1 << 14 // DM_UUID_FLAG, in
	flagSecureData      = 1 << 15 // DM_SECURE_DATA_FLAG, in: the kernel wipes its copies
)

var ne = binary.NativeEndian

// ioctl is the system call; tests replace it with a fake kernel.
var ioctl = func(fd int, req uintptr, buf []byte) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 {
		return e
	}
	return nil
}

// newRequest returns a zeroed buffer of size bytes (at least the header)
// with the header filled in for device name.
func newRequest(size int, name string, flags uint32) []byte {
	if size < headerSize {
		size = headerSize
	}
	b := make([]byte, size)
	ne.PutUint32(b[offVersion:], version[0])
	ne.PutUint32(b[offVersion+4:], version[1])
	ne.PutUint32(b[offVersion+8:], version[2])
	ne.PutUint32(b[offDataSize:], uint32(size))
	ne.PutUint32(b[offDataStart:], headerSize)
	ne.PutUint32(b[offFlags:], flags)
	copy(b[offName:offName+nameLen-1], name)
	return b
}

// cstring reads a NUL-terminated string from b; ok is false when b holds
// no NUL.
func cstring(b []byte) (s string, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
	}
	return string(b), false
}

// reply is the decoded header of an answer.
type reply struct {
	dataSize, dataStart uint32
	targetCount         uint32
	openCount           int32
	flags               uint32
	dev                 uint64
	name, uuid          string
}

func parseReply(b []byte) reply {
	r := reply{
		dataSize:    ne.Uint32(b[offDataSize:]),
		dataStart:   ne.Uint32(b[offDataStart:]),
		targetCount: ne.Uint32(b[offTargetCount:]),
		openCount:   int32(ne.Uint32(b[offOpenCount:])),
		flags:       ne.Uint32(b[offFlags:]),
		dev:         ne.Uint64(b[offDev:]),
	}
	r.name, _ = cstring(b[offName : offName+nameLen])
	r.uuid, _ = cstring(b[offUUID : offUUID+uuidLen])
	return r
}

// payload is the reply's data area: from data_start to data_size, within
// the buffer.
func (r reply) payload(b []byte) ([]byte, bool) {
	end := int(r.dataSize)
	if end > len(b) {
		return nil, false
	}
	if int(r.dataStart) < headerSize || int(r.dataStart) > end {
		return nil, false
	}
	return b[r.dataStart:end], true
}

func (r reply) info() Info {
	return Info{
		Name:            r.name,
		UUID:            r.uuid,
		Dev:             r.dev,
		Suspended:       r.flags&flagSuspend != 0,
		ReadOnly:        r.flags&flagReadOnly != 0,
		ActivePresent:   r.flags&flagActivePresent != 0,
		InactivePresent: r.flags&flagInactivePresent != 0,
		OpenCount:       r.openCount,
		TargetCount:     r.targetCount,
	}
}

func align8(n int) int { return (n + 7) &^ 7 }

// encodeTable lays out targets after the header for DM_TABLE_LOAD. In a
// load, each spec's next counts from the start of that spec to the start
// of the following one (drivers/md/dm-ioctl.c: populate_table,
// next_target), unlike the status reply, where it counts from the first
// spec.
func encodeTable(name string, flags uint32, t []Target) []byte {
	size := headerSize
	for _, x := range t {
		size += specSize + align8(len(x.Params)+1)
	}
	b := newRequest(size, name, flags)
	ne.PutUint32(b[offTargetCount:], uint32(len(t)))
	off := headerSize
	for _, x := range t {
		rec := specSize + align8(len(x.Params)+1)
		s := b[off : off+rec]
		ne.PutUint64(s[specStart:], x.Start)
		ne.PutUint64(s[specLength:], x.Length)
		ne.PutUint32(s[specNext:], uint32(rec))
		copy(s[specType:specType+typeLen-1], x.Type)
		copy(s[specSize:], x.Params)
		off += rec
	}
	return b
}

// decodeTable reads the target specs of a DM_TABLE_STATUS reply. There,
// next is the offset of the following spec from the first one
// (retrieve_status).
func decodeTable(p []byte, count uint32) ([]Target, error) {
	out := make([]Target, 0, count)
	off := 0
	for i := uint32(0); i < count; i++ {
		if off < 0 || off+specSize > len(p) {
			return nil, errMalformed("target %d lies beyond the reply", i)
		}
		s := p[off:]
		typ, ok := cstring(s[specType : specType+typeLen])
		if !ok {
			return nil, errMalformed("target %d type is not terminated", i)
		}
		params, ok := cstring(s[specSize:])
		if !ok {
			return nil, errMalformed("target %d parameters are not terminated", i)
		}
		out = append(out, Target{
			Start:  ne.Uint64(s[specStart:]),
			Length: ne.Uint64(s[specLength:]),
			Type:   typ,
			Params: params,
		})
		next := int(ne.Uint32(s[specNext:]))
		if i+1 < count && next < off+specSize+len(params)+1 {
			return nil, errMalformed("target %d: next %d goes backwards", i, next)
		}
		off = next
	}
	return out, nil
}

// decodeNames reads the dm_name_list records of a DM_LIST_DEVICES reply.
func decodeNames(p []byte) ([]string, error) {
	// An empty list is one record with dev 0, or no record at all.
	if len(p) < nlName+1 || ne.Uint64(p[nlDev:]) == 0 {
		return nil, nil
	}
	var out []string
	for off := 0; ; {
		if off+nlName+1 > len(p) {
			return nil, errMalformed("name record at %d lies beyond the reply", off)
		}
		next := int(ne.Uint32(p[off+nlNext:]))
		end := len(p)
		if next != 0 {
			if next < nlName+1 || off+next > len(p) {
				return nil, errMalformed("name record at %d: next %d is out of bounds", off, next)
			}
			end = off + next
		}
		name, ok := cstring(p[off+nlName : end])
		if !ok {
			return nil, errMalformed("name record at %d is not terminated", off)
		}
		out = append(out, name)
		if next == 0 {
			return out, nil
		}
		off += next
	}
}

// decodeDeps reads the struct dm_target_deps of a DM_TABLE_DEPS reply:
// count u32, padding u32, dev[count] u64.
func decodeDeps(p []byte) ([]uint64, error) {
	if len(p) < 8 {
		return nil, errMalformed("deps reply of %d bytes", len(p))
	}
	n := int(ne.Uint32(p))
	if n > (len(p)-8)/8 {
		return nil, errMalformed("deps reply counts %d devices in %d bytes", n, len(p))
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = ne.Uint64(p[8+8*i:])
	}
	return out, nil
}
