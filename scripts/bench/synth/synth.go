// Package synth generates the benchmarks' synthetic captures: memory and
// disk streams of page-structured data in the proportions of a busy server
// (zero, random and text-like pages; disks with long zero regions), and
// the snapshot stream header that makes memory pages an image.
package synth

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/thawlinux/thaw/images/swsusp"
)

// synth generates n bytes of page-structured data: zero, random and
// text-like pages; disk-like streams have long zero regions.
type synth struct {
	rng      *rand.Rand
	left     int64
	page     []byte
	pend     []byte
	zeroRuns bool
	random   bool // every page random: stored as large as it is
	run      int
}

// New returns n bytes of synthetic pages; disk adds long zero regions.
func New(seed uint64, n int64, disk bool) io.Reader {
	return &synth{rng: rand.New(rand.NewPCG(seed, 7)), left: n, page: make([]byte, 4096), zeroRuns: disk}
}

// Random returns n bytes of random pages: data that does not compress
// (encrypted filesystems, media), so a bundle of it is as large as the
// disk.
func Random(seed uint64, n int64) io.Reader {
	return &synth{rng: rand.New(rand.NewPCG(seed, 7)), left: n, page: make([]byte, 4096), random: true}
}

func (s *synth) fill() {
	p := s.page
	if s.random {
		for i := 0; i < len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], s.rng.Uint64())
		}
		return
	}
	if s.zeroRuns {
		if s.run == 0 {
			s.run = 1 + s.rng.IntN(2048)
			if s.rng.IntN(2) == 0 {
				s.run = -s.run
			}
		}
		if s.run < 0 {
			s.run++
			clear(p)
			return
		}
		s.run--
	}
	switch k := s.rng.IntN(10); {
	case k < 2:
		clear(p)
	case k < 5:
		for i := 0; i < len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], s.rng.Uint64())
		}
	default:
		w := []string{"GET /index.html ", "200 OK ", "session=", "user_id ", "\x00\x00\x01\x00", "redis ", "key:", "value "}
		for i := 0; i < len(p); {
			i += copy(p[i:], w[s.rng.IntN(len(w))])
		}
	}
}

func (s *synth) Read(b []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if len(s.pend) == 0 {
		s.fill()
		s.pend = s.page
	}
	n := copy(b, s.pend[:min(int64(len(s.pend)), s.left)])
	s.pend = s.pend[n:]
	s.left -= int64(n)
	return n, nil
}

// MemoryStream wraps n data pages in a snapshot stream header and
// metadata.
func MemoryStream(seed uint64, pages int) io.Reader {
	meta := (pages*8 + 4095) / 4096
	info := make([]byte, 4096)
	le := binary.LittleEndian
	le.PutUint64(info[24:], swsusp.RestoreMagic)
	le.PutUint64(info[400:], uint64(pages*2))
	le.PutUint64(info[416:], uint64(pages))
	le.PutUint64(info[424:], uint64(1+meta+pages))
	le.PutUint64(info[432:], uint64(1+meta+pages)*4096)
	mb := make([]byte, meta*4096)
	for i := 0; i < pages; i++ {
		le.PutUint64(mb[i*8:], uint64(0x100+i))
	}
	if pages*8 < len(mb) {
		le.PutUint64(mb[pages*8:], ^uint64(0))
	}
	return io.MultiReader(strings.NewReader(string(info)), strings.NewReader(string(mb)), New(seed, int64(pages)*4096, false))
}
