package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/thawlinux/thaw/images/swsusp"
)

func FuzzParse(f *testing.F) {
	small := build(f, testNonce, []testEntry{
		{KindPlan, "p", []byte(`{"a":[1]}`)},
		{KindModule, "m.ko", module("m", 20)},
		{Kind(9), "x", nil},
	})
	for _, b := range [][]byte{
		small,
		build(f, testNonce, nil),
		append(bytes.Clone(small), 0xa5, 0xa5),
	} {
		f.Add(b)
		for _, n := range []int{0, 8, HeaderSize - 1, HeaderSize, HeaderSize + 3, len(b) - 1} {
			if n >= 0 && n <= len(b) {
				f.Add(b[:n])
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			p, err := Parse(b, testNonce)
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not a *FormatError", err)
				}
				return
			}
			// What Parse accepts, Writer writes the same way.
			w := NewWriter(testNonce)
			for _, e := range p.Entries {
				if err := w.Add(e.Kind, e.Name, e.Data); err != nil {
					t.Fatalf("Writer refuses an entry Parse accepted: %v", err)
				}
			}
			again, err := w.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b[:p.Size]) {
				t.Fatalf("payload written again differs")
			}
		}
		check(b)
		// Mutations almost never keep the digest right: seal the input so
		// that the entries are reached too.
		c := bytes.Clone(b)
		reseal(c)
		check(c)
	})
}

// FuzzInjector builds a snapshot stream from a small description, so that
// inputs stay a few hundred bytes: list is the raw content of the metadata
// pages (completed to a whole page with ~0, or with one ~0 and zeros when
// pad is odd), delta shifts image_pages and pages in swsusp_info, data pages
// carry the marker when their PFN is a mailbox page (unless mangle picks
// them) and the stream is cut by cut bytes.
func FuzzInjector(f *testing.F) {
	payload := build(f, testNonce, []testEntry{
		{KindPlan, "plan.json", []byte(`{}`)},
		{KindModule, "m.ko", module("m", PageSize)},
	})
	pfns := []uint64{0x105, 0x101, 0x10a, 0x120}
	le := binary.LittleEndian
	list := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = le.AppendUint64(b, v)
		}
		return b
	}
	f.Add(list(0x100, 0x101, 0x102|pfnZeroFlag, 0x105, 0x10a, 0x120, 0x121), byte(0), int8(0), uint8(0), uint16(0))
	f.Add(list(0x101, 0x105, 0x10a, 0x120|pfnZeroFlag), byte(1), int8(0), uint8(0), uint16(0))
	f.Add(list(0x101, 0x105, 0x10a), byte(0), int8(0), uint8(1), uint16(0))
	f.Add(list(0x101, 0x105|pfnZeroFlag, 0x10a), byte(0), int8(1), uint8(0), uint16(5000))
	f.Add(list(0x120, 0x101, 0x105), byte(0), int8(-1), uint8(2), uint16(1))
	f.Fuzz(func(t *testing.T, raw []byte, pad byte, delta int8, mangle uint8, cut uint16) {
		if len(raw) > 2*PageSize {
			return
		}
		meta := (len(raw) + PageSize - 1) / PageSize
		mb := make([]byte, meta*PageSize)
		copy(mb, raw)
		for j := len(raw) &^ 7; j+8 <= len(mb); j += 8 {
			if j < len(raw) {
				continue
			}
			le.PutUint64(mb[j:], pfnEnd)
			if pad&1 != 0 {
				break
			}
		}
		mbox := map[uint64]int{}
		for i, p := range pfns {
			mbox[p] = i
		}
		var data [][]byte
		for j := 0; j+8 <= len(mb) && len(data) < 64; j += 8 {
			v := le.Uint64(mb[j:])
			if v == pfnEnd {
				break
			}
			if v&pfnZeroFlag != 0 {
				continue
			}
			pg := make([]byte, PageSize)
			if i, ok := mbox[v]; ok && int(mangle) != len(data)+1 {
				Mark(pg, testNonce, i)
			} else {
				pg[0] = byte(j)
			}
			data = append(data, pg)
		}
		image := int64(len(data)) + int64(delta)
		if image < 0 {
			image = 0
		}
		pages := 1 + int64(meta) + image
		info := make([]byte, PageSize)
		le.PutUint64(info[24:], swsusp.RestoreMagic)
		le.PutUint64(info[infoNumPhysPages:], 1<<20)
		le.PutUint64(info[infoImagePages:], uint64(image))
		le.PutUint64(info[infoPages:], uint64(pages))
		le.PutUint64(info[infoSize:], uint64(pages)*PageSize)
		stream := append(info, mb...)
		for _, d := range data {
			stream = append(stream, d...)
		}
		stream = stream[:len(stream)-min(int(cut), len(stream))]

		inj, err := NewInjector(bytes.NewReader(stream), pfns, testNonce, payload)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(inj)
		if err != nil {
			var se *StreamError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *StreamError", err)
			}
			return
		}
		if len(out) != len(stream) || inj.Replaced() != inj.Pages() {
			t.Fatalf("%d bytes in, %d out, %d of %d pages replaced", len(stream), len(out), inj.Replaced(), inj.Pages())
		}
		if _, err := swsusp.NewStreamReader(bytes.NewReader(out)); err != nil {
			t.Fatalf("injected stream no longer a stream: %v", err)
		}
		region, err := Extract(bytes.NewReader(out), pfns[:inj.Pages()])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(region, testNonce); err != nil {
			t.Fatal(err)
		}
		changed := 0
		for i := range out {
			if out[i] != stream[i] {
				changed++
			}
		}
		if changed > inj.Pages()*PageSize {
			t.Fatalf("%d bytes changed, more than %d pages", changed, inj.Pages())
		}
	})
}
