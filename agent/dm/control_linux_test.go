package dm

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// iowr is _IOWR(type, nr, size) of include/uapi/asm-generic/ioctl.h.
func iowr(typ, nr, size uintptr) uintptr {
	return 3<<30 | size<<16 | typ<<8 | nr
}

func TestIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		name string
		got  uintptr
		nr   uintptr
		want uintptr
	}{
		{"DM_VERSION", cmdVersion, 0, 0xc138fd00},
		{"DM_LIST_DEVICES", cmdListDevices, 2, 0xc138fd02},
		{"DM_DEV_SUSPEND", cmdDevSuspend, 6, 0xc138fd06},
		{"DM_DEV_STATUS", cmdDevStatus, 7, 0xc138fd07},
		{"DM_TABLE_LOAD", cmdTableLoad, 9, 0xc138fd09},
		{"DM_TABLE_DEPS", cmdTableDeps, 11, 0xc138fd0b},
		{"DM_TABLE_STATUS", cmdTableStatus, 12, 0xc138fd0c},
	} {
		if c.got != c.want || iowr(0xfd, c.nr, 312) != c.want {
			t.Errorf("%s = %#x, _IOWR gives %#x, want %#x", c.name, c.got, iowr(0xfd, c.nr, 312), c.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"DM_READONLY_FLAG", flagReadOnly, 1},
		{"DM_SUSPEND_FLAG", flagSuspend, 2},
		{"DM_PERSISTENT_DEV_FLAG", flagPersistentDev, 8},
		{"DM_STATUS_TABLE_FLAG", flagStatusTable, 0x10},
		{"DM_ACTIVE_PRESENT_FLAG", flagActivePresent, 0x20},
		{"DM_INACTIVE_PRESENT_FLAG", flagInactivePresent, 0x40},
		{"DM_BUFFER_FULL_FLAG", flagBufferFull, 0x100},
		{"DM_SKIP_LOCKFS_FLAG", flagSkipLockfs, 0x400},
		{"DM_NOFLUSH_FLAG", flagNoFlush, 0x800},
		{"DM_QUERY_INACTIVE_TABLE_FLAG", flagQueryInactive, 0x1000},
		{"DM_UEVENT_GENERATED_FLAG", flagUeventGenerated, 0x2000},
		{"DM_UUID_FLAG", flagUUID, 0x4000},
		{"DM_SECURE_DATA_FLAG", flagSecureData, 0x8000},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestDevEncoding(t *testing.T) {
	for _, d := range [][2]uint32{{0, 0}, {8, 0}, {8, 17}, {254, 1}, {259, 3}, {253, 0}, {254, 300}, {4095, 1<<20 - 1}, {1 << 12, 1 << 20}, {0xffffffff, 0xffffffff}} {
		got := mkdev(d[0], d[1])
		if want := unix.Mkdev(d[0], d[1]); got != want {
			t.Errorf("mkdev(%d, %d) = %#x, unix.Mkdev %#x", d[0], d[1], got, want)
		}
		if devMajor(got) != unix.Major(got) || devMinor(got) != unix.Minor(got) {
			t.Errorf("%#x: major/minor %d/%d, unix %d/%d", got, devMajor(got), devMinor(got), unix.Major(got), unix.Minor(got))
		}
	}
	// The kernel's huge_encode_dev (new_encode_dev) for 254:300.
	ma, mi := uint64(254), uint64(300)
	kernel := mi&0xff | ma<<8 | (mi&^0xff)<<12
	if kernel != mkdev(254, 300) {
		t.Errorf("huge_encode_dev(254:300) = %#x, mkdev %#x", kernel, mkdev(254, 300))
	}
}

// header writes a struct dm_ioctl at literal offsets.
func header(b []byte, dataSize, dataStart, targets uint32, flags uint32, name string) {
	put32(b, 0, 4)
	put32(b, 4, 0)
	put32(b, 8, 0)
	put32(b, 12, dataSize)
	put32(b, 16, dataStart)
	put32(b, 20, targets)
	put32(b, 28, flags)
	copy(b[48:176], name)
}

func TestLoadEncoding(t *testing.T) {
	k := &fakeKernel{devs: []*fakeDev{{name: "vg0-root", dev: mkdev(253, 0), hasLive: true, live: []Target{{0, 100, "linear", "8:2 2048"}}}}}
	c := k.install(t)
	table := []Target{
		{0, 3145728, "linear", "254:1 2048"},                   // 10 bytes: record 40+16
		{3145728, 1048576, "striped", "2 128 254:1 0 254:2 0"}, // 21 bytes: 40+24
		{4194304, 8, "zero", ""},                               // 0 bytes: 40+8
	}
	if err := c.Load("vg0-root", table, true); err != nil {
		t.Fatal(err)
	}
	if len(k.calls) != 1 || k.calls[0].req != 0xc138fd09 {
		t.Fatalf("calls %+v, want one DM_TABLE_LOAD", k.calls)
	}
	want := make([]byte, 312+56+64+48)
	header(want, uint32(len(want)), 312, 3, 1<<15|1<<0, "vg0-root")
	spec := func(off int, start, length uint64, next uint32, typ, params string) {
		put64(want, off, start)
		put64(want, off+8, length)
		put32(want, off+16, 0)
		put32(want, off+20, next)
		copy(want[off+24:off+40], typ)
		copy(want[off+40:], params)
	}
	spec(312, 0, 3145728, 56, "linear", "254:1 2048")
	spec(368, 3145728, 1048576, 64, "striped", "2 128 254:1 0 254:2 0")
	spec(432, 4194304, 8, 48, "zero", "")
	got := k.calls[0].buf
	if !bytes.Equal(got, want) {
		for i := range want {
			if i >= len(got) || got[i] != want[i] {
				t.Fatalf("request differs first at byte %d (len %d, want %d)\ngot  % x\nwant % x", i, len(got), len(want), got[i&^7:min(len(got), i&^7+32)], want[i&^7:min(len(want), i&^7+32)])
			}
		}
	}
	d := k.devs[0]
	if !d.hasInactive || !d.inactiveRO || !reflect.DeepEqual(d.inactive, table) {
		t.Errorf("kernel holds inactive %v ro=%v, want %v ro", d.inactive, d.inactiveRO, table)
	}
}

func TestLoadRejects(t *testing.T) {
	k := &fakeKernel{devs: []*fakeDev{{name: "x", dev: mkdev(253, 0)}}}
	c := k.install(t)
	for _, tc := range []struct {
		name  string
		table []Target
		want  string
	}{
		{"x", nil, "empty table"},
		{"x", []Target{{0, 8, "", ""}}, "no type"},
		{"x", []Target{{0, 8, "averyveryverylongtype", ""}}, "longer than 15"},
		{"x", []Target{{0, 8, "lin ear", ""}}, "space"},
		{"x", []Target{{0, 8, "linear", "8:0\x000"}}, "NUL"},
		{"", []Target{{0, 8, "zero", ""}}, "no device name"},
		{strings.Repeat("n", 128), []Target{{0, 8, "zero", ""}}, "longer than 127"},
	} {
		err := c.Load(tc.name, tc.table, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %v) = %v, want %q", tc.name, tc.table, err, tc.want)
		}
	}
	if len(k.calls) != 0 {
		t.Errorf("%d ioctls for invalid loads", len(k.calls))
	}
	// A name of 127 bytes fits with its NUL.
	n := strings.Repeat("n", 127)
	k.devs[0].name = n
	if err := c.Load(n, []Target{{0, 8, "zero", ""}}, false); err != nil {
		t.Errorf("127-byte name: %v", err)
	}
}

// statusFixture is a DM_TABLE_STATUS reply for "vg0-data" with three
// targets, written byte by byte: next counts from the first spec, the
// status fields and the padding after each string hold junk.
func statusFixture() []byte {
	b := make([]byte, 16<<10)
	for i := range b {
		b[i] = 0xa5
	}
	clear(b[:312])
	put32(b, 0, 4)
	put32(b, 4, 48)
	put32(b, 8, 0)
	put32(b, 16, 312)
	put32(b, 20, 3)                 // target_count
	put32(b, 24, 2)                 // open_count
	put32(b, 28, 1<<1|1<<5|1<<6)    // suspended, active and inactive present
	put32(b, 32, 9)                 // event_nr
	put64(b, 40, mkdev(253, 4))     // dev
	copy(b[48:], "vg0-data\x00")    // name
	copy(b[176:], "LVM-abc123\x00") // uuid
	s := func(off int, start, length uint64, next uint32, typ, params string) {
		put64(b, off, start)
		put64(b, off+8, length)
		put32(b, off+16, 0xdeadbeef)
		put32(b, off+20, next)
		copy(b[off+24:off+40], typ+"\x00")
		copy(b[off+40:], params+"\x00")
	}
	// spec 0 at 0 (312): 40 + "254:1 2048\0" 11 -> 51, aligned 56
	s(312, 0, 2048, 56, "linear", "254:1 2048")
	// spec 1 at 56 (368): 40 + 34+1 = 75 -> 131, aligned 136
	s(368, 2048, 4096, 136, "striped", "2 128 254:1 4096 254:2 4096 extra")
	// spec 2 at 136 (448): 40 + params
	p := "aes-xts-plain64 :64:logon:cryptsetup:LUKS2-abc-d0 0 254:2 32768 1 allow_discards"
	s(448, 6144, 1024, uint32(136+40+al8(len(p)+1)), "crypt", p)
	put32(b, 12, uint32(448+40+len(p)+1)) // data_size: used, to the last NUL
	return b
}

func TestTableDecode(t *testing.T) {
	var sent []byte
	old := ioctl
	ioctl = func(fd int, req uintptr, buf []byte) error {
		if req != 0xc138fd0c {
			t.Fatalf("request %#x, want DM_TABLE_STATUS", req)
		}
		sent = bytes.Clone(buf)
		copy(buf, statusFixture())
		return nil
	}
	t.Cleanup(func() { ioctl = old })
	c := &Control{fd: 7}
	got, err := c.Table("vg0-data")
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{0, 2048, "linear", "254:1 2048"},
		{2048, 4096, "striped", "2 128 254:1 4096 254:2 4096 extra"},
		{6144, 1024, "crypt", "aes-xts-plain64 :64:logon:cryptsetup:LUKS2-abc-d0 0 254:2 32768 1 allow_discards"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Table =\n%v\nwant\n%v", got, want)
	}
	// The request: version 4.0.0, the whole buffer, the table flag and
	// the secure-data flag, the name.
	if le32(sent, 0) != 4 || le32(sent, 4) != 0 || le32(sent, 8) != 0 {
		t.Errorf("version %d.%d.%d", le32(sent, 0), le32(sent, 4), le32(sent, 8))
	}
	if le32(sent, 12) != 16<<10 || len(sent) != 16<<10 || le32(sent, 16) != 312 {
		t.Errorf("data_size %d of %d bytes, data_start %d", le32(sent, 12), len(sent), le32(sent, 16))
	}
	if f := le32(sent, 28); f != 1<<4|1<<15 {
		t.Errorf("flags %#x, want DM_STATUS_TABLE_FLAG|DM_SECURE_DATA_FLAG", f)
	}
	if cstr(sent[48:176]) != "vg0-data" || sent[176] != 0 || le64(sent, 40) != 0 {
		t.Errorf("name %q uuid %q dev %#x", cstr(sent[48:176]), cstr(sent[176:305]), le64(sent, 40))
	}
}

func TestTableMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"next backwards", func(b []byte) { put32(b, 312+20, 8) }},
		{"next beyond", func(b []byte) { put32(b, 368+20, 1<<20) }},
		{"type unterminated", func(b []byte) { copy(b[312+24:312+40], "0123456789abcdef") }},
		{"params unterminated", func(b []byte) { put32(b, 12, 448+40+10) }},
		{"data_size beyond buffer", func(b []byte) { put32(b, 12, 1<<30) }},
		{"data_start inside header", func(b []byte) { put32(b, 16, 200) }},
		{"more targets", func(b []byte) { put32(b, 20, 4) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := ioctl
			ioctl = func(fd int, req uintptr, buf []byte) error {
				b := statusFixture()
				tc.edit(b)
				copy(buf, b)
				return nil
			}
			defer func() { ioctl = old }()
			_, err := (&Control{fd: 7}).Table("vg0-data")
			if err == nil || !strings.Contains(err.Error(), "malformed reply") || !strings.Contains(err.Error(), "vg0-data") {
				t.Errorf("err = %v, want a malformed reply naming the device", err)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	old := ioctl
	var sent []byte
	ioctl = func(fd int, req uintptr, buf []byte) error {
		if req != 0xc138fd07 {
			t.Fatalf("request %#x, want DM_DEV_STATUS", req)
		}
		sent = bytes.Clone(buf)
		b := statusFixture()
		put32(b, 12, 305)
		put32(b, 28, 1<<0|1<<1|1<<5|1<<6)
		copy(buf, b[:305])
		return nil
	}
	t.Cleanup(func() { ioctl = old })
	got, err := (&Control{fd: 7}).Info("vg0-data")
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "vg0-data", UUID: "LVM-abc123", Dev: unix.Mkdev(253, 4), Suspended: true, ReadOnly: true,
		ActivePresent: true, InactivePresent: true, OpenCount: 2, TargetCount: 3}
	if got != want {
		t.Errorf("Info = %+v\nwant %+v", got, want)
	}
	if len(sent) != 312 || le32(sent, 12) != 312 || le32(sent, 16) != 312 || le32(sent, 28) != 0 {
		t.Errorf("request of %d bytes, data_size %d, data_start %d, flags %#x", len(sent), le32(sent, 12), le32(sent, 16), le32(sent, 28))
	}
}

// listFixture is a DM_LIST_DEVICES reply of a 4.48 kernel asked with
// DM_UUID_FLAG: event_nr, flags and a uuid after each name.
func listFixture() []byte {
	b := make([]byte, 16<<10)
	put32(b, 0, 4)
	put32(b, 4, 48)
	put32(b, 16, 312)
	off := 312
	recs := []struct {
		dev        uint64
		name, uuid string
	}{
		{mkdev(253, 0), "vg0-root", "LVM-aaaa"},
		{mkdev(253, 1), "vg0-swap_1", ""},
		{mkdev(253, 2), "cryptdata", "CRYPT-LUKS2-bbbb-cryptdata"},
	}
	for i, r := range recs {
		start := off
		put64(b, off, r.dev)
		copy(b[off+12:], r.name)
		off = al8(off + 12 + len(r.name) + 1)
		put32(b, off, 7) // event_nr
		if r.uuid != "" {
			put32(b, off+4, 1) // DM_NAME_LIST_FLAG_HAS_UUID
			copy(b[off+8:], r.uuid)
			off = al8(off + 8 + len(r.uuid) + 1)
		} else {
			put32(b, off+4, 2)
			off += 8
		}
		if i < len(recs)-1 {
			put32(b, start+8, uint32(off-start))
		}
	}
	put32(b, 12, uint32(off))
	return b
}

func TestDecodeNames(t *testing.T) {
	b := listFixture()
	got, err := decodeNames(b[312:le32(b, 12)])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"vg0-root", "vg0-swap_1", "cryptdata"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"dev 0", make([]byte, 16)},
	} {
		if got, err := decodeNames(tc.p); err != nil || got != nil {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
	}
	bad := listFixture()
	put32(bad, 312+8, 3)
	if _, err := decodeNames(bad[312:le32(bad, 12)]); err == nil {
		t.Error("next inside the record header accepted")
	}
	bad = listFixture()
	put32(bad, 312+8, 1<<20)
	if _, err := decodeNames(bad[312:le32(bad, 12)]); err == nil {
		t.Error("next beyond the reply accepted")
	}
}

func testDevs() []*fakeDev {
	return []*fakeDev{
		{name: "vg0-root", uuid: "LVM-root", dev: mkdev(253, 0), hasLive: true, suspended: true, lockfs: true, open: 1,
			live: []Target{{0, 3145728, "linear", "254:1 2048"}, {3145728, 1048576, "linear", "254:1 4196352"}},
			deps: []uint64{mkdev(254, 1)}},
		{name: "vg0-swap", uuid: "LVM-swap", dev: mkdev(253, 1), hasLive: true, open: 2,
			live: []Target{{0, 2097152, "linear", "254:1 3147776"}}, deps: []uint64{mkdev(254, 1)}},
		{name: "spare", dev: mkdev(253, 2)},
	}
}

func TestList(t *testing.T) {
	for _, old := range []bool{false, true} {
		k := &fakeKernel{devs: testDevs(), oldList: old}
		c := k.install(t)
		got, err := c.List()
		if err != nil {
			t.Fatal(err)
		}
		want := []Info{
			{Name: "vg0-root", UUID: "LVM-root", Dev: unix.Mkdev(253, 0), Suspended: true, ActivePresent: true, OpenCount: 1, TargetCount: 2},
			{Name: "vg0-swap", UUID: "LVM-swap", Dev: unix.Mkdev(253, 1), ActivePresent: true, OpenCount: 2, TargetCount: 1},
			{Name: "spare", Dev: unix.Mkdev(253, 2)},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("old=%v: List =\n%+v\nwant\n%+v", old, got, want)
		}
		if k.calls[0].req != 0xc138fd02 || le32(k.calls[0].buf, 28) != 0 || k.calls[0].buf[48] != 0 {
			t.Errorf("first call %#x flags %#x name %q", k.calls[0].req, le32(k.calls[0].buf, 28), cstr(k.calls[0].buf[48:176]))
		}
	}
}

func TestListEmpty(t *testing.T) {
	k := &fakeKernel{}
	got, err := k.install(t).List()
	if err != nil || len(got) != 0 {
		t.Errorf("List = %v, %v", got, err)
	}
}

func TestListSkipsVanished(t *testing.T) {
	k := &fakeKernel{devs: testDevs()}
	c := k.install(t)
	calls := 0
	inner := ioctl
	ioctl = func(fd int, req uintptr, buf []byte) error {
		if req == 0xc138fd07 {
			calls++
			if calls == 2 {
				return unix.ENXIO
			}
		}
		return inner(fd, req, buf)
	}
	got, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "vg0-root" || got[1].Name != "spare" {
		t.Errorf("List = %+v", got)
	}
}

func TestBufferFullRetry(t *testing.T) {
	// 600 devices need 32 bytes each, 19200 in all: more than 16 KiB.
	k := &fakeKernel{}
	for i := 0; i < 600; i++ {
		k.devs = append(k.devs, &fakeDev{name: "vg0-lv" + itoa(i), dev: mkdev(253, uint32(i))})
	}
	c := k.install(t)
	got, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 600 || got[599].Name != "vg0-lv599" || got[599].Dev != mkdev(253, 599) {
		t.Fatalf("List gave %d devices", len(got))
	}
	var sizes []int
	for _, r := range k.calls {
		if r.req == 0xc138fd02 {
			sizes = append(sizes, len(r.buf))
			if int(le32(r.buf, 12)) != len(r.buf) {
				t.Errorf("data_size %d for a %d-byte buffer", le32(r.buf, 12), len(r.buf))
			}
		}
	}
	if !reflect.DeepEqual(sizes, []int{16 << 10, 32 << 10}) {
		t.Errorf("list buffers %v, want 16K then 32K", sizes)
	}

	// A table longer than the first buffer: the kernel writes part of it
	// and sets DM_BUFFER_FULL_FLAG; the partial answer must not be used.
	long := strings.Repeat("254:1 0 ", 3000) // 24000 bytes
	k = &fakeKernel{devs: []*fakeDev{{name: "big", dev: mkdev(253, 9), hasLive: true,
		live: []Target{{0, 8, "linear", "254:1 0"}, {8, 8, "raid", long}, {16, 8, "linear", "254:2 0"}}}}}
	c = k.install(t)
	tab, err := c.Table("big")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tab, k.devs[0].live) {
		t.Errorf("Table = %d targets, want %d", len(tab), len(k.devs[0].live))
	}
	if len(k.calls) != 2 || len(k.calls[1].buf) != 32<<10 {
		t.Errorf("%d calls", len(k.calls))
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestBufferFullGivesUp(t *testing.T) {
	old := ioctl
	n := 0
	ioctl = func(fd int, req uintptr, buf []byte) error {
		n++
		put32(buf, 28, 1<<8)
		return nil
	}
	t.Cleanup(func() { ioctl = old })
	_, err := (&Control{fd: 7}).Deps("vg0-root")
	if err == nil || !strings.Contains(err.Error(), "DM_TABLE_DEPS vg0-root") || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("err = %v", err)
	}
	if n != 13 { // 16 KiB … 64 MiB
		t.Errorf("%d attempts", n)
	}
}

func TestDeps(t *testing.T) {
	k := &fakeKernel{devs: testDevs()}
	k.devs[0].deps = []uint64{mkdev(254, 1), mkdev(8, 16), mkdev(259, 3)}
	c := k.install(t)
	got, err := c.Deps("vg0-root")
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{unix.Mkdev(254, 1), unix.Mkdev(8, 16), unix.Mkdev(259, 3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("Deps = %v, want %v", got, want)
	}
	if got, err := c.Deps("spare"); err != nil || got != nil {
		t.Errorf("Deps without a table = %v, %v", got, err)
	}
	if got, err := c.Table("spare"); err != nil || got != nil {
		t.Errorf("Table without a table = %v, %v", got, err)
	}
	// A reply that counts more devices than it carries.
	p := make([]byte, 16)
	put32(p, 0, 2)
	if _, err := decodeDeps(p); err == nil {
		t.Error("short deps accepted")
	}
}

func TestSuspendResume(t *testing.T) {
	k := &fakeKernel{devs: testDevs()}
	c := k.install(t)
	if err := c.Suspend("vg0-swap", NoFlush|SkipLockfs); err != nil {
		t.Fatal(err)
	}
	r := k.calls[0]
	if r.req != 0xc138fd06 || le32(r.buf, 28) != 1<<1|1<<10|1<<11 || len(r.buf) != 312 || le32(r.buf, 12) != 312 {
		t.Errorf("suspend: req %#x flags %#x size %d", r.req, le32(r.buf, 28), len(r.buf))
	}
	if d := k.devs[1]; !d.suspended || d.lockfs || !d.noflush {
		t.Errorf("kernel: %+v", d)
	}
	if err := c.Suspend("vg0-swap", 0); err != nil { // already suspended
		t.Fatal(err)
	}
	if err := c.Suspend("spare", 0); err != nil {
		t.Fatal(err)
	}
	if le32(k.calls[2].buf, 28) != 1<<1 || !k.devs[2].lockfs {
		t.Errorf("plain suspend: flags %#x", le32(k.calls[2].buf, 28))
	}
	if err := c.Resume("vg0-swap"); err != nil {
		t.Fatal(err)
	}
	if r := k.calls[3]; r.req != 0xc138fd06 || le32(r.buf, 28) != 0 || cstr(r.buf[48:176]) != "vg0-swap" {
		t.Errorf("resume: req %#x flags %#x name %q", r.req, le32(r.buf, 28), cstr(r.buf[48:176]))
	}
	if k.devs[1].suspended {
		t.Error("still suspended")
	}
}

// The re-pointing as the capture process does it: the disk under the
// volume group moved from 254:1 (virtio-blk) to 259:1 (NVMe).
func TestRepoint(t *testing.T) {
	k := &fakeKernel{devs: testDevs()}
	c := k.install(t)
	moved := map[uint64]uint64{unix.Mkdev(254, 1): unix.Mkdev(259, 1)}
	list, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		tab, err := c.Table(d.Name)
		if err != nil {
			t.Fatal(err)
		}
		out, changed := Retarget(tab, moved)
		if !changed {
			continue
		}
		if !d.Suspended {
			if err := c.Suspend(d.Name, NoFlush); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Load(d.Name, out, d.ReadOnly); err != nil {
			t.Fatal(err)
		}
		if err := c.Resume(d.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range k.devs[:2] {
		if d.suspended || d.hasInactive {
			t.Errorf("%s: suspended %v, inactive %v", d.name, d.suspended, d.hasInactive)
		}
		got := FormatTable(d.live)
		if strings.Contains(got, "254:1") || !strings.Contains(got, "259:1") {
			t.Errorf("%s: live table %q", d.name, got)
		}
	}
	if got := FormatTable(k.devs[0].live); got != "0 3145728 linear 259:1 2048\n3145728 1048576 linear 259:1 4196352" {
		t.Errorf("root table %q", got)
	}
}

func TestErrors(t *testing.T) {
	k := &fakeKernel{devs: testDevs()}
	c := k.install(t)
	tab := []Target{{0, 8, "linear", "259:1 0"}}
	for _, tc := range []struct {
		name string
		call func() error
		is   error
		want []string
	}{
		{"load missing", func() error { return c.Load("vg1-gone", tab, false) }, unix.ENXIO,
			[]string{"dm: DM_TABLE_LOAD vg1-gone", "no such device-mapper device"}},
		{"info missing", func() error { _, err := c.Info("vg1-gone"); return err }, unix.ENXIO,
			[]string{"DM_DEV_STATUS vg1-gone", "no such device-mapper device"}},
		{"table missing", func() error { _, err := c.Table("vg1-gone"); return err }, unix.ENXIO,
			[]string{"DM_TABLE_STATUS vg1-gone"}},
		{"deps missing", func() error { _, err := c.Deps("vg1-gone"); return err }, unix.ENXIO,
			[]string{"DM_TABLE_DEPS vg1-gone"}},
		{"suspend missing", func() error { return c.Suspend("vg1-gone", 0) }, unix.ENXIO,
			[]string{"DM_DEV_SUSPEND vg1-gone"}},
		{"resume missing", func() error { return c.Resume("vg1-gone") }, unix.ENXIO,
			[]string{"DM_DEV_SUSPEND vg1-gone"}},
	} {
		err := tc.call()
		if !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.is)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
	}

	k.fail = map[uintptr][]unix.Errno{
		0xc138fd06: {unix.EACCES},
		0xc138fd09: {unix.EINVAL},
		0xc138fd07: {unix.EINTR, unix.EINTR},
	}
	err := c.Resume("vg0-root")
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "CAP_SYS_ADMIN") || !strings.Contains(err.Error(), "vg0-root") {
		t.Errorf("EACCES: %v", err)
	}
	err = c.Load("vg0-root", []Target{{0, 8, "crypt", "aes-xts-plain64 0123456789abcdef 0 259:1 0"}}, false)
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "refused the table") || strings.Contains(err.Error(), "0123456789abcdef") {
		t.Errorf("EINVAL: %v", err)
	}
	if in, err := c.Info("vg0-root"); err != nil || in.Name != "vg0-root" {
		t.Errorf("EINTR not retried: %+v, %v", in, err)
	}
}

func TestVersionMismatch(t *testing.T) {
	// A kernel older than the request's minor refuses with EINVAL: the
	// package asks for 4.0.0, which every version 4 kernel accepts.
	k := &fakeKernel{minor: 1}
	c := k.install(t)
	if err := c.Suspend("x", 0); !errors.Is(err, unix.ENXIO) {
		t.Errorf("request refused by a 4.1 kernel: %v", err)
	}
	if v := k.calls[0].buf; le32(v, 0) != 4 || le32(v, 4) != 0 || le32(v, 8) != 0 {
		t.Errorf("version sent %d.%d.%d", le32(v, 0), le32(v, 4), le32(v, 8))
	}
}

func TestClose(t *testing.T) {
	c := &Control{fd: -1}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

func TestCreateAndResumeUdev(t *testing.T) {
	k := &fakeKernel{devs: []*fakeDev{{name: "vg0-root", dev: mkdev(254, 0)}}}
	c := k.install(t)
	in, err := c.Create("thaw-root", "THAW-root-1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "thaw-root" || in.UUID != "THAW-root-1" || in.Dev != mkdev(254, 1) || in.ActivePresent {
		t.Fatalf("Create = %+v", in)
	}
	if _, err := c.Create("thaw-root", ""); err == nil || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("second Create: %v, want EBUSY", err)
	}
	if _, err := c.Create("", ""); err == nil {
		t.Fatal("Create with no name succeeded")
	}
	table := []Target{{0, 2048, "linear", "254:1 0"}}
	if err := c.Load("thaw-root", table, false); err != nil {
		t.Fatal(err)
	}
	if err := c.ResumeUdev("thaw-root"); err != nil {
		t.Fatal(err)
	}
	d := k.find("thaw-root")
	if !d.hasLive || d.suspended || FormatTable(d.live) != FormatTable(table) {
		t.Fatalf("after ResumeUdev: %+v", d)
	}
	// The cookie: DM_UDEV_PRIMARY_SOURCE_FLAG (0x40) above bit 16, base 0.
	if got := k.cookies[len(k.cookies)-1]; got != 0x00400000 {
		t.Errorf("cookie %#x, want 0x00400000", got)
	}
	if err := c.Resume("thaw-root"); err != nil || k.cookies[len(k.cookies)-1] != 0 {
		t.Errorf("plain Resume: %v, cookie %#x", err, k.cookies[len(k.cookies)-1])
	}
	if err := c.Remove("thaw-root"); err != nil || k.find("thaw-root") != nil {
		t.Errorf("Remove: %v", err)
	}
	if err := c.Remove("thaw-root"); !errors.Is(err, unix.ENXIO) {
		t.Errorf("Remove of a removed device: %v", err)
	}
}
