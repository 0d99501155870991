package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/thawlinux/thaw/images/swsusp"
)

// Byte offsets of struct swsusp_info on x86-64, as images/swsusp decodes it.
const (
	infoNumPhysPages = 400
	infoImagePages   = 416
	infoPages        = 424
	infoSize         = 432
)

// snapshot describes a synthetic snapshot stream: the PFN list as the
// metadata encodes it (zero flags included) and each data page.
type snapshot struct {
	list []uint64
	data map[uint64][]byte // by PFN, for the PFNs without the zero flag
	// pad is how the list ends when it does not fill its last page: ~0
	// throughout (padAll) or ~0 then zeros (padOne).
	pad int
}

func (s *snapshot) bytes() []byte {
	le := binary.LittleEndian
	var nData int
	for _, v := range s.list {
		if v&pfnZeroFlag == 0 {
			nData++
		}
	}
	meta := (len(s.list)*8 + PageSize - 1) / PageSize
	pages := 1 + meta + nData
	out := make([]byte, 0, pages*PageSize)
	info := make([]byte, PageSize)
	le.PutUint64(info[24:], swsusp.RestoreMagic)
	le.PutUint64(info[32:], 0x5678)
	le.PutUint64(info[infoNumPhysPages:], 1<<20)
	le.PutUint64(info[infoImagePages:], uint64(nData))
	le.PutUint64(info[infoPages:], uint64(pages))
	le.PutUint64(info[infoSize:], uint64(pages)*PageSize)
	out = append(out, info...)
	mb := make([]byte, meta*PageSize)
	for i, v := range s.list {
		le.PutUint64(mb[i*8:], v)
	}
	for j := len(s.list) * 8; j < len(mb); j += 8 {
		le.PutUint64(mb[j:], pfnEnd)
		if s.pad == padOne {
			break
		}
	}
	out = append(out, mb...)
	for _, v := range s.list {
		if v&pfnZeroFlag == 0 {
			out = append(out, s.data[v]...)
		}
	}
	return out
}

const (
	padAll = iota
	padOne
)

// dataPage returns the stream page holding PFN pfn's data, or -1.
func (s *snapshot) dataPage(pfn uint64) int {
	meta := (len(s.list)*8 + PageSize - 1) / PageSize
	k := 0
	for _, v := range s.list {
		if v == pfn {
			return 1 + meta + k
		}
		if v&pfnZeroFlag == 0 {
			k++
		}
	}
	return -1
}

// newSnapshot builds a stream of about n PFNs with gaps, every seventh page
// flagged zero, and a mailbox of mbox pages scattered among them in an order
// unrelated to their index. It returns the stream description and the
// mailbox PFNs by index.
func newSnapshot(n, mbox int, seed uint64) (*snapshot, []uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	s := &snapshot{data: make(map[uint64][]byte)}
	var all []uint64
	pfn := uint64(0x100)
	for len(all) < n {
		if rng.IntN(20) == 0 {
			pfn += uint64(rng.IntN(100))
		}
		all = append(all, pfn)
		pfn++
	}
	// Pick the mailbox pages among the PFNs, leaving out the zero ones.
	var cand []int
	for i := range all {
		if i%7 != 6 {
			cand = append(cand, i)
		}
	}
	rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	mailbox := make([]uint64, mbox)
	isMbox := make(map[uint64]int)
	for i := range mbox {
		mailbox[i] = all[cand[i]]
		isMbox[mailbox[i]] = i
	}
	for i, p := range all {
		if i%7 == 6 {
			s.list = append(s.list, p|pfnZeroFlag)
			continue
		}
		s.list = append(s.list, p)
		pg := make([]byte, PageSize)
		if m, ok := isMbox[p]; ok {
			Mark(pg, testNonce, m)
		} else {
			for j := range pg {
				pg[j] = byte(rng.Uint32())
			}
		}
		s.data[p] = pg
	}
	return s, mailbox
}

// bigPayload takes three pages.
func bigPayload(t testing.TB) []byte {
	b := build(t, testNonce, []testEntry{
		{KindPlan, "plan.json", []byte(`{"nics":[]}`)},
		{KindModule, "virtio_net.ko", module("virtio_net", 5000)},
		{KindModule, "failover.ko", module("failover", 3000)},
		{KindModule, "net_failover.ko", module("net_failover", 1000)},
	})
	if n := (len(b) + PageSize - 1) / PageSize; n != 3 {
		t.Fatalf("payload takes %d pages, want 3", n)
	}
	return b
}

func TestInject(t *testing.T) {
	payload := bigPayload(t)
	for _, tc := range []struct {
		name   string
		n      int
		pad    int
		reader func(io.Reader) io.Reader
		out    func(io.Reader) io.Reader
	}{
		{"plain", 700, padAll, nil, nil},
		{"list fills its pages exactly", 1024, padAll, nil, nil},
		{"end marker then zeros", 700, padOne, nil, nil},
		{"one byte at a time in", 700, padAll, iotest.OneByteReader, nil},
		{"half reads in", 700, padAll, iotest.HalfReader, nil},
		{"EOF with the last data", 700, padAll, iotest.DataErrReader, nil},
		{"one byte at a time out", 300, padAll, nil, iotest.OneByteReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, pfns := newSnapshot(tc.n, 16, 1)
			s.pad = tc.pad
			stream := s.bytes()
			var r io.Reader = bytes.NewReader(stream)
			if tc.reader != nil {
				r = tc.reader(r)
			}
			inj, err := NewInjector(r, pfns, testNonce, payload)
			if err != nil {
				t.Fatal(err)
			}
			var out io.Reader = inj
			if tc.out != nil {
				out = tc.out(out)
			}
			got, err := io.ReadAll(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(stream) {
				t.Fatalf("%d bytes out, %d in", len(got), len(stream))
			}
			if inj.Replaced() != 3 || inj.Pages() != 3 {
				t.Errorf("Replaced() = %d, Pages() = %d, want 3", inj.Replaced(), inj.Pages())
			}
			want := bytes.Clone(stream)
			for i := range 3 {
				pg := s.dataPage(pfns[i])
				dst := want[pg*PageSize : (pg+1)*PageSize]
				clear(dst)
				copy(dst, payload[i*PageSize:min(len(payload), (i+1)*PageSize)])
			}
			if !bytes.Equal(got, want) {
				for pg := 0; pg < len(got)/PageSize; pg++ {
					if !bytes.Equal(got[pg*PageSize:(pg+1)*PageSize], want[pg*PageSize:(pg+1)*PageSize]) {
						t.Fatalf("stream page %d differs", pg)
					}
				}
			}

			// The project's stream reader still accepts the stream.
			sr, err := swsusp.NewStreamReader(bytes.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			for {
				if _, err := sr.Next(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if err := sr.Close(); err != nil {
				t.Fatal(err)
			}

			// Extract and Parse recover the payload; the untouched mailbox
			// pages still carry their markers.
			region, err := Extract(bytes.NewReader(got), pfns)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(region, testNonce)
			if err != nil {
				t.Fatal(err)
			}
			if p.Size != len(payload) || len(p.Modules()) != 3 || string(p.Plan()) != `{"nics":[]}` {
				t.Errorf("payload read back: %+v", p)
			}
			if n := CountMarkers(region, testNonce); n != 13 {
				t.Errorf("%d marker pages left, want 13", n)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	s, pfns := newSnapshot(500, 8, 3)
	region, err := Extract(bytes.NewReader(s.bytes()), pfns)
	if err != nil {
		t.Fatal(err)
	}
	if len(region) != 8*PageSize || CountMarkers(region, testNonce) != 8 {
		t.Fatalf("region of %d bytes with %d markers", len(region), CountMarkers(region, testNonce))
	}
	if _, err := Parse(region, testNonce); !errors.Is(err, ErrNoPayload) {
		t.Errorf("Parse(intact mailbox): %v, want ErrNoPayload", err)
	}

	// A mailbox page flagged zero reads back as zeros.
	i := slices.Index(s.list, pfns[5])
	s.list[i] |= pfnZeroFlag
	region, err = Extract(bytes.NewReader(s.bytes()), pfns)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(region[5*PageSize:6*PageSize], make([]byte, PageSize)) || CountMarkers(region, testNonce) != 7 {
		t.Errorf("zero-flagged mailbox page not read as zeros")
	}

	// A mailbox page missing from the metadata is an error.
	s.list = slices.Delete(s.list, i, i+1)
	if _, err := Extract(bytes.NewReader(s.bytes()), pfns); !errors.Is(err, ErrNotSaved) {
		t.Errorf("Extract with a mailbox page missing: %v, want ErrNotSaved", err)
	}
}

func TestInjectErrors(t *testing.T) {
	payload := bigPayload(t)
	le := binary.LittleEndian
	for _, tc := range []struct {
		name  string
		edit  func(s *snapshot, pfns []uint64) []byte // returns the stream
		is    error
		index int // mailbox page the error names, -1 for none
		says  string
	}{
		{"marker missing", func(s *snapshot, pfns []uint64) []byte {
			copy(s.data[pfns[1]], "THAWMBOY")
			return s.bytes()
		}, ErrNotMarker, 1, ""},
		{"marker of another page", func(s *snapshot, pfns []uint64) []byte {
			Mark(s.data[pfns[2]], testNonce, 3)
			return s.bytes()
		}, ErrNotMarker, 2, ""},
		{"marker of another capture", func(s *snapshot, pfns []uint64) []byte {
			s.data[pfns[0]][8] ^= 1
			return s.bytes()
		}, ErrNotMarker, 0, ""},
		{"mailbox page absent", func(s *snapshot, pfns []uint64) []byte {
			i := slices.Index(s.list, pfns[2])
			s.list = slices.Delete(s.list, i, i+1)
			return s.bytes()
		}, ErrNotSaved, 2, ""},
		{"mailbox page zero", func(s *snapshot, pfns []uint64) []byte {
			s.list[slices.Index(s.list, pfns[1])] |= pfnZeroFlag
			return s.bytes()
		}, ErrZeroPage, 1, ""},
		{"cut in a data page", func(s *snapshot, pfns []uint64) []byte {
			b := s.bytes()
			return b[:len(b)-PageSize-100]
		}, io.ErrUnexpectedEOF, -1, ""},
		{"cut in the metadata", func(s *snapshot, pfns []uint64) []byte {
			return s.bytes()[:PageSize+10]
		}, io.ErrUnexpectedEOF, -1, "stream page 1 "},
		{"cut in the header", func(s *snapshot, pfns []uint64) []byte {
			return s.bytes()[:PageSize-1]
		}, io.ErrUnexpectedEOF, -1, "stream page 0 "},
		{"empty stream", func(s *snapshot, pfns []uint64) []byte {
			return nil
		}, io.ErrUnexpectedEOF, -1, "stream page 0 "},
		{"data after the end", func(s *snapshot, pfns []uint64) []byte {
			return append(s.bytes(), 0)
		}, nil, -1, "data after the last page"},
		{"not a snapshot", func(s *snapshot, pfns []uint64) []byte {
			b := s.bytes()
			b[24] ^= 1
			return b
		}, nil, -1, "arch magic"},
		{"PFNs out of order", func(s *snapshot, pfns []uint64) []byte {
			s.list[3], s.list[4] = s.list[4], s.list[3]
			return s.bytes()
		}, nil, -1, "not above the previous"},
		{"image_pages wrong", func(s *snapshot, pfns []uint64) []byte {
			b := s.bytes()
			le.PutUint64(b[infoImagePages:], le.Uint64(b[infoImagePages:])-1)
			le.PutUint64(b[infoPages:], le.Uint64(b[infoPages:])-1)
			le.PutUint64(b[infoSize:], le.Uint64(b[infoSize:])-PageSize)
			return b
		}, nil, -1, "metadata lists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, pfns := newSnapshot(700, 16, 5)
			stream := tc.edit(s, pfns)
			for _, rd := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader} {
				inj, err := NewInjector(rd(bytes.NewReader(stream)), pfns, testNonce, payload)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(inj)
				if err == nil {
					t.Fatal("no error")
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%v, want %v", err, tc.is)
				}
				if !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%v does not say %q", err, tc.says)
				}
				var se *StreamError
				if !errors.As(err, &se) {
					t.Fatalf("%v is not a *StreamError", err)
				}
				if se.Index != tc.index {
					t.Errorf("error names mailbox page %d, want %d", se.Index, tc.index)
				}
				if tc.index >= 0 {
					if se.PFN != pfns[tc.index] {
						t.Errorf("error names PFN %#x, want %#x", se.PFN, pfns[tc.index])
					}
					if want := fmt.Sprintf("PFN %#x, mailbox page %d", pfns[tc.index], tc.index); !strings.Contains(err.Error(), want) {
						t.Errorf("%v does not name %q", err, want)
					}
				}
				if tc.is == ErrNotMarker {
					if want := int64(s.dataPage(pfns[tc.index])); se.Page != want {
						t.Errorf("error names stream page %d, want %d", se.Page, want)
					}
				}
			}
		})
	}
}

// TestInjectUnneededPages checks that mailbox pages the payload does not
// reach may be anything, absent or zero.
func TestInjectUnneededPages(t *testing.T) {
	payload := bigPayload(t)
	s, pfns := newSnapshot(400, 8, 9)
	i := slices.Index(s.list, pfns[6])
	s.list = slices.Delete(s.list, i, i+1)
	i = slices.Index(s.list, pfns[7])
	s.list[i] |= pfnZeroFlag
	clear(s.data[pfns[5]])
	inj, err := NewInjector(bytes.NewReader(s.bytes()), pfns, testNonce, payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(inj); err != nil {
		t.Fatal(err)
	}
	if inj.Replaced() != 3 {
		t.Errorf("Replaced() = %d, want 3", inj.Replaced())
	}
}

func TestNewInjectorRefuses(t *testing.T) {
	payload := bigPayload(t)
	_, pfns := newSnapshot(100, 8, 1)
	other := testNonce
	other[3]++
	for _, tc := range []struct {
		name    string
		pfns    []uint64
		nonce   [16]byte
		payload []byte
		says    string
	}{
		{"no PFNs", nil, testNonce, payload, "no mailbox PFNs"},
		{"payload too big", pfns[:2], testNonce, payload, "needs 3 pages, the mailbox has 2"},
		{"another capture's payload", pfns, other, payload, "another capture"},
		{"not a payload", pfns, testNonce, []byte("THAWMBOX"), "no payload"},
		{"duplicate PFN", append([]uint64{pfns[4]}, pfns...), testNonce, payload, "both at PFN"},
		{"PFN with the zero flag", append(slices.Clone(pfns[:3]), pfnZeroFlag|7), testNonce, payload, "beyond any physical address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewInjector(bytes.NewReader(nil), tc.pfns, tc.nonce, tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("NewInjector: %v, want an error saying %q", err, tc.says)
			}
		})
	}
	// Exactly fitting is fine.
	if _, err := NewInjector(bytes.NewReader(nil), pfns[:3], testNonce, payload); err != nil {
		t.Error(err)
	}
}
