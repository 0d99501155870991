package bundle

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// memPages makes n pages of random bytes (every ninth page zero), each
// page's bytes from its own seed, so that two images can share pages.
func memPages(seeds []uint64) []byte {
	out := make([]byte, 0, len(seeds)*pageSize)
	for _, s := range seeds {
		page := make([]byte, pageSize)
		if s%9 != 0 {
			r := mrand.New(mrand.NewPCG(s, 1))
			for i := 0; i < pageSize; i += 8 {
				binary.LittleEndian.PutUint64(page[i:], r.Uint64())
			}
		}
		out = append(out, page...)
	}
	return out
}

// nextImage is a later capture of image: pages dropped and taken (every
// later page shifts), and every changeEvery-th page changed in place.
func nextImage(seeds []uint64, gen uint64, changeEvery int) []uint64 {
	var out []uint64
	for i, s := range seeds {
		switch {
		case i%97 == 5: // freed
		case i%changeEvery == 3:
			out = append(out, s+gen*1_000_003)
		default:
			out = append(out, s)
		}
		if i%89 == 7 { // taken
			out = append(out, 1<<40+gen<<20+uint64(i))
		}
	}
	return out
}

func haveIn(dir string) func(string) bool {
	return func(sum string) bool {
		_, err := os.Stat(filepath.Join(dir, ChunkPath(sum)))
		return err == nil
	}
}

// A capture's memory stored as page deltas against the previous one sends
// only the pages that changed, and reads back whole: plain and sealed
// with a chunk key, over a chain of three captures (the third's bases are
// the second's deltas).
func TestPageDeltas(t *testing.T) {
	pub, priv := testKey(t)
	_, rcp := recipientPair(t)
	key := bytes.Repeat([]byte{7}, ChunkKeySize)
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "chunk key"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			so := func(p *Pages) *StoreOptions {
				o := &StoreOptions{Have: haveIn(dir), Pages: p}
				if sealed {
					o.ChunkKey = key
				}
				return o
			}
			var rs []*age.X25519Recipient
			if sealed {
				rs = append(rs, rcp)
			}
			seeds := make([]uint64, 1500)
			for i := range seeds {
				seeds[i] = uint64(i + 1)
			}
			images := [][]byte{memPages(seeds)}
			pack, first := writePack(t, &priv, []streamSpec{{"memory", KindMemory, images[0]}}, 256<<10, so(nil), rs...)
			unpack(t, dir, "b0.thaw", pack)
			for gen := 1; gen <= 2; gen++ {
				base := openStored(t, dir, "b"+string(rune('0'+gen-1))+".thaw", &pub)
				if sealed {
					if err := base.UnlockChunkKey(key); err != nil {
						t.Fatal(err)
					}
				}
				p := NewPages()
				if err := base.IndexPages(context.Background(), p, base.Index.Stream("memory")); err != nil {
					t.Fatal(err)
				}
				seeds = nextImage(seeds, uint64(gen), 4)
				img := memPages(seeds)
				images = append(images, img)
				pack, st := writePack(t, &priv, []streamSpec{{"memory", KindMemory, img}}, 256<<10, so(p), rs...)
				name := "b" + string(rune('0'+gen)) + ".thaw"
				unpack(t, dir, name, pack)
				t.Logf("capture %d: %d chunks, %d deltas taking %d pages, sent %d of %d bytes (the first capture stored %d)", gen, st.Chunks, st.Deltas, st.DeltaPages, st.SentBytes, st.StoredBytes, first.StoredBytes)
				if st.Deltas == 0 || st.SentBytes*100 > first.StoredBytes*45 {
					t.Errorf("capture %d sent %d bytes in %d deltas; a quarter of the pages changed, want under 45 %% of %d", gen, st.SentBytes, st.Deltas, first.StoredBytes)
				}
				br := openStored(t, dir, name, &pub)
				if sealed {
					if err := br.UnlockChunkKey(key); err != nil {
						t.Fatal(err)
					}
				}
				got := readAllFetched(t, br, "memory")
				if !bytes.Equal(got, img) {
					t.Fatalf("capture %d reads back other bytes", gen)
				}
				// The bases are among the chunks the bundle keeps (gc, copies).
				sums := map[string]bool{}
				for _, s := range br.ChunkSums() {
					sums[s] = true
				}
				for _, c := range br.Index.Stream("memory").Chunks {
					for _, b := range c.Base {
						if !sums[b.SHA256] {
							t.Errorf("base %s is not among ChunkSums", b.SHA256)
						}
					}
				}
				if err := br.Verify(nil); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// readAllFetched reads a stream through Fetch, several chunks at once.
func readAllFetched(t *testing.T, br *Reader, name string) []byte {
	t.Helper()
	var out []byte
	err := br.Fetch(context.Background(), br.Index.Stream(name), 0, FetchOptions{Workers: 3}, func(i int, c Chunk, data []byte) error {
		if data == nil {
			data = make([]byte, c.Len)
		}
		out = append(out, data...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A delta whose base is missing or damaged is refused, naming the base;
// pages read with another chunk key cannot be the base of a Writer.
func TestPageDeltaRefusals(t *testing.T) {
	pub, priv := testKey(t)
	_, rcp := recipientPair(t)
	dir := t.TempDir()
	seeds := make([]uint64, 400)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	pack, _ := writePack(t, &priv, []streamSpec{{"memory", KindMemory, memPages(seeds)}}, 256<<10, &StoreOptions{})
	unpack(t, dir, "b0.thaw", pack)
	base := openStored(t, dir, "b0.thaw", &pub)
	p := NewPages()
	if err := base.IndexPages(context.Background(), p, base.Index.Stream("memory")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(io.Discard, WriterOptions{Recipients: []*age.X25519Recipient{rcp}, Store: &StoreOptions{ChunkKey: bytes.Repeat([]byte{1}, ChunkKeySize), Pages: p}}); err == nil || !strings.Contains(err.Error(), "another chunk key") {
		t.Errorf("a Writer sealing with a key over plain pages: %v", err)
	}
	pack, st := writePack(t, &priv, []streamSpec{{"memory", KindMemory, memPages(nextImage(seeds, 1, 4))}}, 256<<10, &StoreOptions{Have: haveIn(dir), Pages: p})
	if st.Deltas == 0 {
		t.Fatal("no delta made")
	}
	unpack(t, dir, "b1.thaw", pack)
	br := openStored(t, dir, "b1.thaw", &pub)
	var victim string
	for _, c := range br.Index.Stream("memory").Chunks {
		if len(c.Base) > 0 {
			victim = c.Base[0].SHA256
			break
		}
	}
	path := filepath.Join(dir, ChunkPath(victim))
	good, _ := os.ReadFile(path)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	os.WriteFile(path, bad, 0o600)
	if err := br.Verify(nil); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), victim) {
		t.Errorf("a damaged base: %v", err)
	}
	os.Remove(path)
	br = openStored(t, dir, "b1.thaw", &pub)
	if err := br.Verify(nil); err == nil || !strings.Contains(err.Error(), victim) {
		t.Errorf("a missing base: %v", err)
	}
}

func FuzzDelta(f *testing.F) {
	p := NewPages()
	base := memPages([]uint64{1, 2, 3, 4, 5, 6, 7, 8})
	p.addPages(base, 0)
	p.refs = append(p.refs, Ref{SHA256: strings.Repeat("ab", 32), Stored: 100, Len: int64(len(base))})
	d, _, _ := p.makeDelta(memPages([]uint64{2, 3, 99, 4, 5, 9, 6}))
	f.Add(d, int64(7*pageSize), 1)
	f.Add([]byte(deltaMagic+"\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"), int64(pageSize), 0)
	f.Fuzz(func(t *testing.T, b []byte, want int64, nbase int) {
		d, err := parseDelta(b, want, nbase)
		if err != nil {
			return
		}
		if int64(len(d.ops))*pageSize != want || len(d.bases) != nbase {
			t.Fatalf("%d ops for %d bytes, %d bases for %d", len(d.ops), want, len(d.bases), nbase)
		}
		lits := 0
		for _, op := range d.ops {
			if op == OpLiteral {
				lits++
			} else if op != OpZero && int(op>>24) >= nbase {
				t.Fatalf("op %x past %d bases", op, nbase)
			}
		}
		if len(d.literals) != lits*pageSize {
			t.Fatalf("%d literal bytes for %d literals", len(d.literals), lits)
		}
		payloadPage(b, true, uint32(lits))
	})
}
