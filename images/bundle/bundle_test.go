package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/manifest"
)

func testKey(t testing.TB) (minisign.PublicKey, minisign.PrivateKey) {
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

type streamSpec struct {
	name, kind string
	data       []byte
}

func testData(seed uint64, n int) []byte {
	rng := mrand.New(mrand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		switch rng.IntN(3) {
		case 0: // zero page
		case 1:
			for j := i; j < min(i+4096, n); j++ {
				b[j] = byte(rng.Uint32())
			}
		default:
			copy(b[i:min(i+4096, n)], bytes.Repeat([]byte("thaw "), 820))
		}
	}
	return b
}

func specs() []streamSpec {
	disk := testData(2, 300_000)
	clear(disk[8192:200_000]) // zero chunks in the middle
	return []streamSpec{
		{"memory", KindMemory, testData(1, 250_000)},
		{"disk0", KindDisk, disk},
		{"vmlinuz", KindFile, testData(3, 5000)},
	}
}

func writeBundle(t testing.TB, key *minisign.PrivateKey, ss []streamSpec) []byte {
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterOptions{ChunkSize: 16384})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		sw, err := w.Stream(s.name, s.kind)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.ReadFrom(bytes.NewReader(s.data)); err != nil {
			t.Fatal(err)
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{Version: manifest.Version, Kind: "export", Kernel: manifest.Kernel{Release: "6.12.0-test"}}
	if _, err := w.Finish(m, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	ss := specs()
	b := writeBundle(t, &priv, ss)
	r, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Signed || r.Manifest.Kernel.Release != "6.12.0-test" {
		t.Fatalf("signed %v manifest %+v", r.Signed, r.Manifest.Kernel)
	}
	if err := r.Verify(nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		sr, err := r.OpenStream(s.name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(sr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, s.data) {
			t.Fatalf("stream %s differs", s.name)
		}
	}
	disk := r.Index.Stream("disk0")
	zero := 0
	for _, c := range disk.Chunks {
		if c.Zero {
			zero++
		}
	}
	if zero < 8 {
		t.Errorf("disk stream has %d zero chunks, want the zero region left out", zero)
	}
	for _, c := range r.Index.Stream("memory").Chunks {
		if c.Zero {
			t.Error("memory streams store every chunk")
		}
	}
	// Unsigned reading for inspection works too.
	if r2, err := Open(bytes.NewReader(b), int64(len(b)), nil); err != nil || r2.Signed {
		t.Fatalf("unverified open: %v signed=%v", err, r2.Signed)
	}
}

// TestBadInput: every kind of damage is refused with a message naming it.
func TestBadInput(t *testing.T) {
	pub, priv := testKey(t)
	otherPub, otherPriv := testKey(t)
	_ = otherPub
	good := writeBundle(t, &priv, specs())
	r, _ := Open(bytes.NewReader(good), int64(len(good)), &pub)
	mem := r.Index.Stream("memory")
	c0, c1 := mem.Chunks[0], mem.Chunks[1]
	for _, tc := range []struct {
		name   string
		bundle func() []byte
		pub    *minisign.PublicKey
		verify bool // the damage shows only when chunks are read
		want   string
	}{
		{"flipped-chunk-byte", func() []byte { b := bytes.Clone(good); b[c1.At+c1.Stored/2] ^= 1; return b }, &pub, true, `stream "memory" chunk 1 at byte`},
		{"truncated", func() []byte { return good[:len(good)-100] }, &pub, false, "trailer"},
		{"truncated-to-half", func() []byte { return good[:len(good)/2] }, &pub, false, "not a thaw bundle, or truncated"},
		{"reordered-chunks", func() []byte {
			b := bytes.Clone(good)
			// swap the stored bytes of two chunks of equal size where possible
			a := b[c0.At : c0.At+c0.Stored]
			bb := b[c1.At : c1.At+c1.Stored]
			n := min(len(a), len(bb))
			tmp := bytes.Clone(a[:n])
			copy(a[:n], bb[:n])
			copy(bb[:n], tmp)
			return b
		}, &pub, true, "sha256 mismatch"},
		{"manifest-edited", func() []byte {
			b := bytes.Clone(good)
			i := bytes.Index(b, []byte("6.12.0-test"))
			b[i] = '7'
			return b
		}, &pub, false, "edited after signing"},
		{"index-edited", func() []byte {
			b := bytes.Clone(good)
			i := bytes.Index(b, []byte(`"chunk_size": 16384`))
			copy(b[i:], `"chunk_size": 16385`)
			return b
		}, &pub, false, "signature does not verify"},
		{"wrong-key", func() []byte { return writeBundle(t, &otherPriv, specs()) }, &pub, false, "not by the given key"},
		{"unsigned", func() []byte { return writeBundle(t, nil, specs()) }, &pub, false, "not signed"},
		{"not-a-bundle", func() []byte { return bytes.Repeat([]byte{7}, 4096) }, &pub, false, "not a thaw bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bundle()
			r, err := Open(bytes.NewReader(b), int64(len(b)), tc.pub)
			if err == nil && tc.verify {
				err = r.Verify(nil)
			} else if err == nil {
				t.Fatal("damaged bundle opened")
			}
			if err == nil {
				t.Fatal("damage not detected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
	if _, err := Open(bytes.NewReader(writeBundle(t, nil, specs())), int64(len(writeBundle(t, nil, specs()))), &pub); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
}

// TestMinisignTool: the real minisign verifies the index signature with a
// key thaw generated, and thaw verifies what the real tool signs.
func TestMinisignTool(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Fatal("the minisign tool is needed (apt-get install minisign)")
	}
	dir := t.TempDir()
	pub, priv := testKey(t)
	b := writeBundle(t, &priv, specs())
	r, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := pub.MarshalText()
	os.WriteFile(filepath.Join(dir, "k.pub"), append(pubText, '\n'), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), r.IndexRaw, 0o644)
	os.WriteFile(filepath.Join(dir, "index.json.minisig"), r.Signature, 0o644)
	if out, err := exec.Command("minisign", "-V", "-p", filepath.Join(dir, "k.pub"), "-m", filepath.Join(dir, "index.json")).CombinedOutput(); err != nil {
		t.Fatalf("minisign -V rejects thaw's signature: %v\n%s", err, out)
	}
	// The other way: a key and a signature made by the tool.
	cmd := exec.Command("minisign", "-G", "-W", "-p", filepath.Join(dir, "tool.pub"), "-s", filepath.Join(dir, "tool.key"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v %s", err, out)
	}
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("index bytes"), 0o644)
	if out, err := exec.Command("minisign", "-S", "-s", filepath.Join(dir, "tool.key"), "-m", msg).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v %s", err, out)
	}
	tpub, err := LoadPublicKey(filepath.Join(dir, "tool.pub"))
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(msg + ".minisig")
	if !minisign.Verify(tpub, []byte("index bytes"), sig) {
		t.Fatal("thaw does not verify the minisign tool's signature")
	}
	tkey, err := LoadPrivateKey(filepath.Join(dir, "tool.key"), "")
	if err != nil {
		t.Fatalf("thaw cannot read the tool's unencrypted key: %v", err)
	}
	if !minisign.Verify(tpub, []byte("x"), minisign.Sign(tkey, []byte("x"))) {
		t.Fatal("the tool's key loaded by thaw does not sign for its public key")
	}
}

func FuzzOpen(f *testing.F) {
	pub, priv := testKey(f)
	f.Add(writeBundle(f, &priv, specs()[2:]))
	f.Add(writeBundle(f, nil, specs()[2:]))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []*minisign.PublicKey{nil, &pub} {
			r, err := Open(bytes.NewReader(b), int64(len(b)), k)
			if err != nil {
				continue
			}
			r.Verify(nil)
			r.Close()
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	_, priv := testKey(f)
	b := writeBundle(f, &priv, specs())
	r, _ := Open(bytes.NewReader(b), int64(len(b)), nil)
	f.Add(r.IndexRaw, int64(len(b)))
	f.Fuzz(func(t *testing.T, ix []byte, end int64) {
		ParseIndex(ix, end)
	})
}

func FuzzChunk(f *testing.F) {
	_, priv := testKey(f)
	b := writeBundle(f, &priv, specs())
	r, _ := Open(bytes.NewReader(b), int64(len(b)), nil)
	s := r.Index.Stream("memory")
	c := s.Chunks[0]
	f.Add(b[c.At : c.At+c.Stored])
	f.Fuzz(func(t *testing.T, stored []byte) {
		// Whatever the stored bytes, a chunk that does not hash right is
		// never decompressed, and one that does must have the right length.
		out, err := r.decodeChunk(context.Background(), s, 0, stored, nil)
		if err == nil && int64(len(out)) != c.Len {
			t.Fatalf("decoded %d bytes, want %d", len(out), c.Len)
		}
	})
}

// The audit: chunk_size need only be positive, so the held-back resume
// header could straddle two chunks. It must be whole pages.
func TestChunkSizeWholePages(t *testing.T) {
	for _, cs := range []int64{1, 4095, 6000, 4096 + 512} {
		ix := fmt.Sprintf(`{"version":1,"chunk_size":%d,"manifest":{"at":64,"size":2,"sha256":"00"},"streams":[]}`, cs)
		if _, err := ParseIndex([]byte(ix), 1<<20); err == nil || !strings.Contains(err.Error(), "multiple of 4096") {
			t.Errorf("chunk_size %d: %v", cs, err)
		}
		if _, err := NewWriter(io.Discard, WriterOptions{ChunkSize: cs}); err == nil {
			t.Errorf("NewWriter took chunk size %d", cs)
		}
	}
}

// hugeClaim serves a bundle whose trailer claims an index of 250 MiB,
// with only the real bytes behind the start of it.
type hugeClaim struct {
	b    []byte
	size int64
}

func (h hugeClaim) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(h.b)) && off < h.size-TrailerSize-4096 {
		return 0, errors.New("connection reset")
	}
	if off >= h.size-TrailerSize-4096 { // the signature and trailer, at the end
		off -= h.size - int64(len(h.b))
	}
	return bytes.NewReader(h.b).ReadAt(p, off)
}

// The audit: up to 256 MiB was allocated before the signature check. The
// index is read in pieces as its bytes arrive: a claim costs nothing.
func TestIndexClaimAllocatesWhatArrives(t *testing.T) {
	pub, priv := testKey(t)
	good := writeBundle(t, &priv, specs())
	le := binary.LittleEndian
	tr := good[len(good)-TrailerSize:]
	indexAt, sigSize := int64(le.Uint64(tr[8:])), int64(le.Uint64(tr[32:]))
	// Move the signature and trailer 250 MiB further on.
	const claim = 250 << 20
	b := bytes.Clone(good)
	size := int64(len(b)) + claim
	tr = b[len(b)-TrailerSize:]
	le.PutUint64(tr[16:], uint64(size-TrailerSize-sigSize-indexAt))
	le.PutUint64(tr[24:], uint64(size-TrailerSize-sigSize))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Open(hugeClaim{b, size}, size, &pub)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "index") {
		t.Fatalf("Open of a bundle claiming a 250 MiB index: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
		t.Errorf("allocated %d MiB for an index of which 1 MiB arrived", got>>20)
	}
}

// The audit: nothing tied the bundle served to the one requested. A pin
// on the index digest does, and the signed comment names the bundle.
func TestPinAndLabel(t *testing.T) {
	pub, priv := testKey(t)
	a, b := writeBundle(t, &priv, specs()), writeBundle(t, &priv, specs())
	ra, err := Open(bytes.NewReader(a), int64(len(a)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Label.ID == "" || ra.Label.ID == rb.Label.ID || ra.Label.Created == "" || ra.Label.ID != ra.Index.ID {
		t.Errorf("labels %+v and %+v: want distinct ids from the signed comment", ra.Label, rb.Label)
	}
	ref, pin, err := SplitPin("http://h/s.thaw#sha256=" + strings.ToUpper(ra.Digest()))
	if err != nil || ref != "http://h/s.thaw" || pin != ra.Digest() {
		t.Fatalf("SplitPin: %q %q %v", ref, pin, err)
	}
	if err := CheckPin(ra, pin); err != nil {
		t.Errorf("the pinned bundle: %v", err)
	}
	if err := CheckPin(rb, pin); !errors.Is(err, ErrPin) {
		t.Errorf("another bundle signed by the same key: %v, want ErrPin", err)
	}
	for _, bad := range []string{"x#sha256=12", "x#md5=" + ra.Digest(), "x#sha256=" + strings.Repeat("g", 64)} {
		if _, _, err := SplitPin(bad); err == nil {
			t.Errorf("SplitPin(%q) passed", bad)
		}
	}
	if ref, pin, err := SplitPin("/srv/a.thaw"); err != nil || pin != "" || ref != "/srv/a.thaw" {
		t.Errorf("no pin: %q %q %v", ref, pin, err)
	}
}
