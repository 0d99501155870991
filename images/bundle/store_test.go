package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/images/manifest"
)

// writePack writes ss as a version 2 bundle's pack.
func writePack(t testing.TB, key *minisign.PrivateKey, ss []streamSpec, chunkSize int64, so *StoreOptions, rs ...*age.X25519Recipient) ([]byte, Stats) {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterOptions{ChunkSize: chunkSize, Recipients: rs, Store: so})
	if err != nil {
		t.Fatal(err)
	}
	w.Warm()
	for _, s := range ss {
		sw, err := w.Stream(s.name, s.kind)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.Write(s.data); err != nil {
			t.Fatal(err)
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{Version: manifest.Version, Kind: "export", Hostname: "db1", Kernel: manifest.Kernel{Release: "6.12.0-test"}}
	if _, err := w.Finish(m, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), w.Stats()
}

// unpack stores a pack in dir as a store would: each chunk at its
// ChunkPath, the bundle object as name.
func unpack(t testing.TB, dir, name string, pack []byte) {
	t.Helper()
	pr, err := NewPackReader(bytes.NewReader(pack))
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := pr.Next()
		if err == ErrPackEnd {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(pr)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if rec.Kind == RecordChunk {
			path = filepath.Join(dir, ChunkPath(rec.SHA256))
		}
		os.MkdirAll(filepath.Dir(path), 0o700)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func openStored(t testing.TB, dir, name string, pub *minisign.PublicKey, ids ...age.Identity) *Reader {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	br, err := Open(f, st.Size(), pub)
	if err != nil {
		t.Fatal(err)
	}
	br.SetChunkSource(DirSource(dir))
	if len(ids) == 0 && br.Encrypted() {
		return br // for UnlockChunkKey
	}
	if err := br.Unlock(ids...); err != nil {
		t.Fatal(err)
	}
	return br
}

// A version 2 bundle in a store reads back as it was written, plain or
// encrypted, sequentially and fetched ahead; its object holds no chunk.
func TestStoreRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	id, rcp := recipientPair(t)
	for _, tc := range []struct {
		name string
		rs   []*age.X25519Recipient
		ids  []age.Identity
	}{
		{"plain", nil, nil},
		{"encrypted", []*age.X25519Recipient{rcp}, []age.Identity{id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ss := specs()
			pack, stats := writePack(t, &priv, ss, 16384, &StoreOptions{}, tc.rs...)
			unpack(t, dir, "b.thaw", pack)
			br := openStored(t, dir, "b.thaw", &pub, tc.ids...)
			if !br.Signed || !br.InStore() || br.Index.Version != StoreVersion || br.Encrypted() != (tc.rs != nil) {
				t.Fatalf("signed %v, in store %v, version %d, encrypted %v", br.Signed, br.InStore(), br.Index.Version, br.Encrypted())
			}
			if stats.Sent != stats.Chunks || stats.SentBytes != stats.StoredBytes {
				t.Errorf("a first bundle into an empty store sent %d of %d chunks", stats.Sent, stats.Chunks)
			}
			if err := br.Verify(nil); err != nil {
				t.Fatal(err)
			}
			for _, s := range ss {
				sr, err := br.OpenStream(s.name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(sr)
				if err != nil || !bytes.Equal(got, s.data) {
					t.Fatalf("stream %s: %d bytes back, %v", s.name, len(got), err)
				}
				ar, err := br.OpenStreamAhead(context.Background(), s.name, FetchOptions{Workers: 3})
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(ar)
				ar.Close()
				if err != nil || !bytes.Equal(got, s.data) {
					t.Fatalf("stream %s ahead: %d bytes back, %v", s.name, len(got), err)
				}
			}
			obj, _ := os.ReadFile(filepath.Join(dir, "b.thaw"))
			if int64(len(obj)) >= stats.StoredBytes/4 {
				t.Errorf("the bundle object is %d bytes for %d stored: does it hold chunks?", len(obj), stats.StoredBytes)
			}
		})
	}
}

// The same server captured again: with the chunk key shared, only the
// chunks that changed are sent, even when a page was inserted early in the
// memory stream (content-defined cuts); a different chunk key shares
// nothing.
func TestStoreDedupe(t *testing.T) {
	_, priv := testKey(t)
	_, rcp := recipientPair(t)
	ck := bytes.Repeat([]byte{7}, ChunkKeySize)
	rng := mrand.New(mrand.NewPCG(9, 9))
	mem := make([]byte, 12<<20)
	for i := range mem {
		mem[i] = byte(rng.Uint32())
	}
	disk := testData(4, 8<<20)
	first := []streamSpec{{"memory", KindMemory, mem}, {"disk0", KindDisk, disk}}
	// A minute later: one page more at the start of memory, one changed
	// block on disk.
	page := bytes.Repeat([]byte{0xa5}, 4096)
	mem2 := append(append([]byte{}, page...), mem...)
	disk2 := append([]byte{}, disk...)
	copy(disk2[5<<20:], "a changed block")
	second := []streamSpec{{"memory", KindMemory, mem2}, {"disk0", KindDisk, disk2}}

	dir := t.TempDir()
	have := func(sum string) bool {
		_, err := os.Stat(filepath.Join(dir, ChunkPath(sum)))
		return err == nil
	}
	pack, s1 := writePack(t, &priv, first, 4<<20, &StoreOptions{Have: have, ChunkKey: ck}, rcp)
	unpack(t, dir, "a.thaw", pack)
	pack, s2 := writePack(t, &priv, second, 4<<20, &StoreOptions{Have: have, ChunkKey: ck}, rcp)
	unpack(t, dir, "b.thaw", pack)
	t.Logf("first: %d chunks, %d bytes sent; second: %d of %d chunks, %d bytes sent (%.1f%%)",
		s1.Sent, s1.SentBytes, s2.Sent, s2.Chunks, s2.SentBytes, 100*float64(s2.SentBytes)/float64(s1.SentBytes))
	if s2.SentBytes*4 > s1.SentBytes {
		t.Errorf("the second capture sent %d bytes, the first %d: want under a quarter", s2.SentBytes, s1.SentBytes)
	}
	_, s3 := writePack(t, &priv, second, 4<<20, &StoreOptions{Have: have, ChunkKey: bytes.Repeat([]byte{8}, ChunkKeySize)}, rcp)
	if s3.Sent != s3.Chunks {
		t.Errorf("another chunk key shared %d of %d chunks", s3.Chunks-s3.Sent, s3.Chunks)
	}
}

// A chunk the store lost or damaged is named, and never handed out.
func TestStoreChunkFaults(t *testing.T) {
	pub, priv := testKey(t)
	dir := t.TempDir()
	pack, _ := writePack(t, &priv, specs(), 16384, &StoreOptions{})
	unpack(t, dir, "b.thaw", pack)
	br := openStored(t, dir, "b.thaw", &pub)
	c := br.Index.Stream("disk0").Chunks[0]
	path := filepath.Join(dir, ChunkPath(c.SHA256))
	good, _ := os.ReadFile(path)

	bad := append([]byte{}, good...)
	bad[len(bad)/2] ^= 1
	os.WriteFile(path, bad, 0o600)
	if err := br.Verify(nil); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), ChunkPath(c.SHA256)) {
		t.Errorf("damaged chunk: %v", err)
	}
	os.Remove(path)
	if err := br.Verify(nil); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), c.SHA256) {
		t.Errorf("missing chunk: %v", err)
	}
	os.WriteFile(path, append(good, 0), 0o600)
	if err := br.Verify(nil); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("long chunk: %v", err)
	}
	br.SetChunkSource(nil)
	if _, err := br.ReadChunk(br.Index.Stream("disk0"), 0, nil); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Errorf("no chunk source: %v", err)
	}
}

// Every way a pack can be wrong is refused, naming the byte.
func TestPackReaderBad(t *testing.T) {
	_, priv := testKey(t)
	pack, _ := writePack(t, &priv, specs()[:1], 16384, &StoreOptions{})
	first := PackHeaderSize // the first record's header
	for _, tc := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "not a thaw pack"},
		{"version", func(b []byte) []byte { b[8] = 9; return b }, "version 9"},
		{"reserved", func(b []byte) []byte { b[first+3] = 1; return b }, "reserved"},
		{"kind", func(b []byte) []byte { b[first] = 'Z'; return b }, "unknown kind"},
		{"size zero", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[first+8:], 0); return b }, "size 0"},
		{"size huge", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[first+8:], 1<<40); return b }, "outside"},
		{"damaged", func(b []byte) []byte { b[first+PackRecordHeaderSize] ^= 1; return b }, "sha256"},
		{"truncated", func(b []byte) []byte { return b[:first+PackRecordHeaderSize+3] }, "unexpected EOF"},
		{"no bundle record", func(b []byte) []byte {
			pr, _ := NewPackReader(bytes.NewReader(b))
			rec, _ := pr.Next()
			return b[:rec.Offset+PackRecordHeaderSize+rec.Size]
		}, "must end with a bundle record"},
		{"after the end", func(b []byte) []byte { return append(b, 0) }, "after the bundle record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := drainPack(tc.edit(append([]byte{}, pack...)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if err := drainPack(pack); err != nil {
		t.Fatalf("the good pack: %v", err)
	}
}

func drainPack(b []byte) error {
	pr, err := NewPackReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for {
		rec, err := pr.Next()
		if err == ErrPackEnd {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Kind == RecordBundle && rec.Size > 1<<20 {
			return errors.New("too big for the test")
		}
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return err
		}
	}
}

func FuzzPackReader(f *testing.F) {
	_, priv := testKey(f)
	pack, _ := writePack(f, &priv, specs()[:1], 16384, &StoreOptions{})
	f.Add(pack)
	f.Add(pack[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		drainPack(b)
	})
}

// After a page inserted at the start, the content-defined cuts fall at the
// same pages again.
func TestCDCRealigns(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 3))
	mem := make([]byte, 24<<20)
	for i := range mem {
		mem[i] = byte(rng.Uint32())
	}
	cuts := func(b []byte) map[[32]byte]bool {
		out := map[[32]byte]bool{}
		for len(b) > 0 {
			n := cdcCut(b, 4<<20, true)
			out[sha256.Sum256(b[:n])] = true
			b = b[n:]
		}
		return out
	}
	a := cuts(mem)
	b := cuts(append(make([]byte, 4096), mem...))
	shared := 0
	for k := range b {
		if a[k] {
			shared++
		}
	}
	if shared*10 < len(a)*8 {
		t.Errorf("%d of %d chunks shared after a page was inserted", shared, len(a))
	}
}

// A pre-copy's Plain lets the frozen phase take unchanged disk chunks as
// they are: the same index as computing them again, the changed chunk
// still sent; a Plain is refused by a Writer that seals otherwise.
func TestStorePlain(t *testing.T) {
	pub, priv := testKey(t)
	id, rcp := recipientPair(t)
	ck := bytes.Repeat([]byte{3}, ChunkKeySize)
	disk := testData(5, 6<<20)
	dir := t.TempDir()
	have := func(sum string) bool {
		_, err := os.Stat(filepath.Join(dir, ChunkPath(sum)))
		return err == nil
	}
	plain := NewPlain()
	pre, s0 := writePack(t, &priv, []streamSpec{{"disk0", KindDisk, disk}}, 1<<20, &StoreOptions{Have: have, ChunkKey: ck, Plain: plain}, rcp)
	unpack(t, dir, "pre.thaw", pre)
	if plain.Len() == 0 || s0.Reused != 0 {
		t.Fatalf("the pre-copy remembered %d chunks, reused %d", plain.Len(), s0.Reused)
	}
	copy(disk[2<<20+100:], "changed after the pre-copy")
	ss := []streamSpec{{"memory", KindMemory, testData(6, 1<<20)}, {"disk0", KindDisk, disk}}
	pack, s1 := writePack(t, &priv, ss, 1<<20, &StoreOptions{Have: have, ChunkKey: ck, Plain: plain}, rcp)
	if s1.Reused != s0.Chunks-1 {
		t.Errorf("reused %d disk chunks of %d: want all but the changed one", s1.Reused, s0.Chunks)
	}
	_, s2 := writePack(t, &priv, ss, 1<<20, &StoreOptions{Have: have, ChunkKey: ck}, rcp)
	if s1.Sent != s2.Sent || s1.SentBytes != s2.SentBytes || s1.StoredBytes != s2.StoredBytes {
		t.Errorf("with the Plain %+v, without %+v: want the same chunks", s1, s2)
	}
	unpack(t, dir, "b.thaw", pack)
	br := openStored(t, dir, "b.thaw", &pub, id)
	got, err := io.ReadAll(must(br.OpenStream("disk0")))
	if err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("the disk read back: %d bytes, %v", len(got), err)
	}
	for _, so := range []*StoreOptions{
		{Plain: plain, ChunkKey: bytes.Repeat([]byte{4}, ChunkKeySize)}, // another key
		{Plain: NewPlain()}, // encrypted with a random key
	} {
		if _, err := NewWriter(io.Discard, WriterOptions{Recipients: []*age.X25519Recipient{rcp}, Store: so}); err == nil {
			t.Errorf("a Writer took a Plain it cannot share (%x…)", so.ChunkKey[:min(len(so.ChunkKey), 2)])
		}
	}
}

func must(sr *StreamReader, err error) *StreamReader {
	if err != nil {
		panic(err)
	}
	return sr
}
