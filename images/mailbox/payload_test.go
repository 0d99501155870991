package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

var testNonce = [16]byte{0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8}

func module(name string, size int) []byte {
	b := make([]byte, size)
	copy(b, "\x7fELF\x02\x01\x01")
	for i := 7; i < size; i++ {
		b[i] = byte(len(name) + i*31)
	}
	return b
}

type testEntry struct {
	kind Kind
	name string
	data []byte
}

func testEntries() []testEntry {
	return []testEntry{
		{KindPlan, "plan.json", []byte(`{"nics":[{"mac":"52:54:00:12:34:56","name":"eth0"}],"disks":["vda"]}`)},
		{KindModule, "virtio_net.ko", module("virtio_net", 5000)},
		{KindModule, "failover.ko", module("failover", 300)},
		{KindModule, "net_failover.ko", module("net_failover", 9000)},
		{Kind(7), "later.bin", []byte("a kind a later version adds")},
		{KindModule, "e1000e.ko", module("e1000e", 4)},
	}
}

func build(t testing.TB, nonce [16]byte, es []testEntry) []byte {
	w := NewWriter(nonce)
	for _, e := range es {
		if err := w.Add(e.kind, e.name, e.data); err != nil {
			t.Fatal(err)
		}
	}
	b, err := w.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reseal recomputes the digest of the payload at the start of b after a test
// has altered it, when the total length lies within b.
func reseal(b []byte) {
	if len(b) < HeaderSize {
		return
	}
	total := binary.LittleEndian.Uint64(b[offLength:])
	if total < HeaderSize || total > uint64(len(b)) {
		return
	}
	d := digest(b[:total])
	copy(b[offDigest:], d[:])
}

func TestRoundTrip(t *testing.T) {
	es := testEntries()
	b := build(t, testNonce, es)
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"exact", b},
		{"in a mailbox region", append(bytes.Clone(b), bytes.Repeat([]byte{0xa5}, 4*PageSize-len(b))...)},
		{"followed by another payload", append(bytes.Clone(b), b...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.input, testNonce)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != Version || p.Nonce != testNonce || p.Size != len(b) || len(p.Entries) != len(es) {
				t.Fatalf("header %+v", p)
			}
			for i, e := range es {
				g := p.Entries[i]
				if g.Kind != e.kind || g.Name != e.name || !bytes.Equal(g.Data, e.data) {
					t.Errorf("entry %d: got %s %q (%d bytes), want %s %q (%d bytes)", i, g.Kind, g.Name, len(g.Data), e.kind, e.name, len(e.data))
				}
			}
			if !bytes.Equal(p.Plan(), es[0].data) {
				t.Errorf("Plan() = %q", p.Plan())
			}
			var names []string
			for _, m := range p.Modules() {
				names = append(names, m.Name)
			}
			if got := strings.Join(names, " "); got != "virtio_net.ko failover.ko net_failover.ko e1000e.ko" {
				t.Errorf("Modules() in order %s", got)
			}
		})
	}
}

func TestEmptyPayload(t *testing.T) {
	b := build(t, testNonce, nil)
	if len(b) != HeaderSize {
		t.Fatalf("empty payload of %d bytes", len(b))
	}
	p, err := Parse(b, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	if p.Plan() != nil || p.Modules() != nil || len(p.Entries) != 0 {
		t.Errorf("entries in an empty payload: %+v", p)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindPlan: "plan", KindModule: "module", 0: "kind(0)", 9: "kind(9)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k, want)
		}
	}
}

func TestTruncated(t *testing.T) {
	b := build(t, testNonce, []testEntry{
		{KindPlan, "p", []byte(`[1,2]`)},
		{KindModule, "m.ko", module("m", 40)},
	})
	for n := 0; n < len(b); n++ {
		_, err := Parse(b[:n], testNonce)
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("%d of %d bytes: error %v, want a *FormatError", n, len(b), err)
		}
		if n >= len(PayloadMagic) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d of %d bytes: %v does not say the payload is cut short", n, len(b), err)
		}
	}
}

func TestFlippedByte(t *testing.T) {
	b := build(t, testNonce, testEntries()[:3])
	for i := range b {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(b)
			c[i] ^= bit
			_, err := Parse(c, testNonce)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("byte %d ^ %#x: error %v, want a *FormatError", i, bit, err)
			}
			if i >= offNonce+16 && i < offDigest+32 || i >= HeaderSize {
				if !errors.Is(err, ErrDigest) {
					t.Errorf("byte %d ^ %#x: %v, want ErrDigest", i, bit, err)
				}
			}
		}
	}
}

func TestWrongNonce(t *testing.T) {
	b := build(t, testNonce, testEntries())
	other := testNonce
	other[15] ^= 1
	_, err := Parse(b, other)
	if !errors.Is(err, ErrNonce) || errors.Is(err, ErrDigest) {
		t.Fatalf("Parse with another nonce: %v, want ErrNonce", err)
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Offset != offNonce || fe.Field != "nonce" {
		t.Errorf("error %#v, want offset %d field nonce", fe, offNonce)
	}
}

func TestNoPayload(t *testing.T) {
	page := make([]byte, PageSize)
	Mark(page, testNonce, 0)
	for _, b := range [][]byte{nil, []byte("THAW"), page, make([]byte, PageSize)} {
		if _, err := Parse(b, testNonce); !errors.Is(err, ErrNoPayload) {
			t.Errorf("Parse(%q...): %v, want ErrNoPayload", b[:min(len(b), 8)], err)
		}
	}
}

// TestParseErrors alters valid payloads, reseals them, and checks the error
// names the field and offset at fault.
func TestParseErrors(t *testing.T) {
	le := binary.LittleEndian
	base := func() []byte {
		return build(t, testNonce, []testEntry{
			{KindPlan, "plan.json", []byte(`{}`)},
			{KindModule, "a.ko", module("a", 10)},
		})
	}
	// Offsets in base: entry 0 at 72, name at 75, data length at 84, data
	// at 88; entry 1 at 90, name at 93, data length at 97, data at 101.
	for _, tc := range []struct {
		name   string
		edit   func(b []byte) []byte
		offset int64
		field  string
		reason string
	}{
		{"version", func(b []byte) []byte { le.PutUint16(b[8:], 2); return b }, 8, "version", "version 2"},
		{"flags", func(b []byte) []byte { le.PutUint16(b[10:], 1); return b }, 10, "flags", "unknown flags"},
		{"too many entries", func(b []byte) []byte { le.PutUint32(b[12:], MaxEntries+1); return b }, 12, "entry count", "at most"},
		{"entries cannot fit", func(b []byte) []byte { le.PutUint32(b[12:], 100); return b }, 12, "entry count", "cannot fit"},
		{"count above entries", func(b []byte) []byte { le.PutUint32(b[12:], 3); return b }, 111, "entry 2 header", "ends after 2 entries"},
		{"count below entries", func(b []byte) []byte { le.PutUint32(b[12:], 1); return b }, 90, "end", "21 bytes after the last of 1 entries"},
		{"length below header", func(b []byte) []byte { le.PutUint64(b[16:], 71); return b }, 16, "total length", "less than the header"},
		{"length above max", func(b []byte) []byte { le.PutUint64(b[16:], MaxSize+1); return b }, 16, "total length", "at most"},
		{"length above input", func(b []byte) []byte { le.PutUint64(b[16:], uint64(len(b)+1)); return b }, 16, "total length", "only 111 present"},
		{"trailing garbage", func(b []byte) []byte {
			b = append(b, 0, 0)
			le.PutUint64(b[16:], uint64(len(b)))
			return b
		}, 111, "end", "2 bytes after"},
		{"kind 0", func(b []byte) []byte { b[90] = 0; return b }, 90, "entry 1 kind", "kind 0"},
		{"second plan", func(b []byte) []byte {
			b[90] = byte(KindPlan)
			copy(b[101:], "[1,2,3,45]")
			return b
		}, 90, "entry 1 kind", "second plan"},
		{"duplicate name", func(b []byte) []byte {
			b = b[:90]
			b = append(b, byte(KindPlan), 9, 0)
			b = append(b, "plan.json"...)
			b = append(b, 2, 0, 0, 0, '{', '}')
			le.PutUint64(b[16:], uint64(len(b)))
			return b
		}, 93, "entry 1 name", "listed twice"},
		{"empty name", func(b []byte) []byte { le.PutUint16(b[91:], 0); return b }, 91, "entry 1 name length", "0 bytes"},
		{"long name length", func(b []byte) []byte { le.PutUint16(b[91:], 256); return b }, 91, "entry 1 name length", "256 bytes"},
		{"name past end", func(b []byte) []byte { le.PutUint16(b[91:], 200); return b }, 93, "entry 1 name", "run past"},
		{"name with slash", func(b []byte) []byte { b[94] = '/'; return b }, 93, "entry 1 name", "'/'"},
		{"name not UTF-8", func(b []byte) []byte { b[94] = 0xff; return b }, 93, "entry 1 name", "UTF-8"},
		{"data past end", func(b []byte) []byte { le.PutUint32(b[97:], 11); return b }, 97, "entry 1 data length", "11 bytes run past"},
		{"huge data length", func(b []byte) []byte { le.PutUint32(b[97:], 0xffffffff); return b }, 97, "entry 1 data length", "run past"},
		{"plan not JSON", func(b []byte) []byte { b[88] = '['; return b }, 88, "entry 0 data", "not valid JSON"},
		{"module not ELF", func(b []byte) []byte { b[102] = 'X'; return b }, 101, "entry 1 data", "not an uncompressed ELF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(base())
			reseal(b)
			_, err := Parse(b, testNonce)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *FormatError", err)
			}
			if fe.Offset != tc.offset || fe.Field != tc.field || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q at %d (%s), want %q at %d (%s)", err, fe.Offset, fe.Field, tc.reason, tc.offset, tc.field)
			}
			if want := fmt.Sprintf("payload byte %d (%s)", tc.offset, tc.field); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		})
	}
}

func TestWriterRefuses(t *testing.T) {
	plan := []byte(`{"a":1}`)
	big := make([]byte, MaxSize)
	copy(big, "\x7fELF")
	for _, tc := range []struct {
		name   string
		before []testEntry
		add    testEntry
		reason string
	}{
		{"kind 0", nil, testEntry{0, "x", nil}, "kind 0"},
		{"empty name", nil, testEntry{KindModule, "", module("", 10)}, "empty name"},
		{"long name", nil, testEntry{KindModule, strings.Repeat("n", 256), module("", 10)}, "256 bytes"},
		{"slash", nil, testEntry{KindModule, "../x.ko", module("", 10)}, "'/'"},
		{"NUL", nil, testEntry{KindModule, "x\x00.ko", module("", 10)}, "NUL"},
		{"dot-dot", nil, testEntry{KindModule, "..", module("", 10)}, ". or .."},
		{"not UTF-8", nil, testEntry{KindModule, "\xff.ko", module("", 10)}, "UTF-8"},
		{"duplicate", []testEntry{{KindModule, "a.ko", module("a", 10)}}, testEntry{KindModule, "a.ko", module("b", 10)}, "already used"},
		{"second plan", []testEntry{{KindPlan, "plan.json", plan}}, testEntry{KindPlan, "plan2.json", plan}, "already has a plan"},
		{"plan not JSON", nil, testEntry{KindPlan, "plan.json", []byte("{")}, "not valid JSON"},
		{"compressed module", nil, testEntry{KindModule, "a.ko.zst", []byte("\x28\xb5\x2f\xfd....")}, "not an uncompressed ELF"},
		{"too big", nil, testEntry{KindModule, "big.ko", big}, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(testNonce)
			for _, e := range tc.before {
				if err := w.Add(e.kind, e.name, e.data); err != nil {
					t.Fatal(err)
				}
			}
			err := w.Add(tc.add.kind, tc.add.name, tc.add.data)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Add: %v, want an error saying %q", err, tc.reason)
			}
			if _, err2 := w.Bytes(); err2 != err {
				t.Errorf("Bytes after a failed Add: %v, want %v", err2, err)
			}
		})
	}
	// The same name under another kind is allowed.
	w := NewWriter(testNonce)
	if err := w.Add(KindPlan, "x", plan); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(KindModule, "x", module("x", 8)); err != nil {
		t.Fatal(err)
	}
}

func TestWriterTooManyEntries(t *testing.T) {
	w := NewWriter(testNonce)
	m := module("m", 4)
	for i := range MaxEntries {
		if err := w.Add(KindModule, fmt.Sprint(i), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add(KindModule, "one-more", m); err == nil {
		t.Fatal("entry past MaxEntries accepted")
	}
}

func TestMarker(t *testing.T) {
	// The layout agent/capture has always written.
	for _, i := range []int{0, 1, 255, 1023} {
		want := make([]byte, PageSize)
		for j := range want {
			want[j] = byte(0xa5 ^ i ^ j)
		}
		copy(want, "THAWMBOX")
		copy(want[8:], testNonce[:])
		binary.LittleEndian.PutUint32(want[24:], uint32(i))
		got := make([]byte, PageSize)
		Mark(got, testNonce, i)
		if !bytes.Equal(got, want) {
			t.Fatalf("Mark page %d differs from the capture layout", i)
		}
		if !IsMarker(got, testNonce, i) {
			t.Errorf("IsMarker(page %d) false", i)
		}
		if IsMarker(got, testNonce, i+1) {
			t.Errorf("page %d taken for page %d", i, i+1)
		}
		other := testNonce
		other[0]++
		if IsMarker(got, other, i) {
			t.Errorf("page %d taken for another capture's", i)
		}
		if IsMarker(got[:27], testNonce, i) {
			t.Errorf("27-byte page taken for a marker")
		}
	}
	region := make([]byte, 8*PageSize+100)
	for i := range 8 {
		Mark(region[i*PageSize:(i+1)*PageSize], testNonce, i)
	}
	if n := CountMarkers(region, testNonce); n != 8 {
		t.Errorf("CountMarkers = %d, want 8", n)
	}
	copy(region[3*PageSize:], PayloadMagic)
	Mark(region[5*PageSize:6*PageSize], testNonce, 4)
	if n := CountMarkers(region, testNonce); n != 6 {
		t.Errorf("CountMarkers after damage = %d, want 6", n)
	}
}
