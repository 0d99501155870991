package capture

import (
	"bytes"
	"io"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/netfetch/store"
)

// writeBase stores a bundle with a memory stream of 300 random pages in
// a store layout under dir (or in the S3 bucket through rw), signed with
// key, sealed with chunkKey when rs is not empty.
func writeBase(t *testing.T, dir, name string, rw bundle.RecordWriter, key minisign.PrivateKey, chunkKey []byte, rs []*age.X25519Recipient) []byte {
	t.Helper()
	mem := make([]byte, 300*4096)
	rand.New(rand.NewSource(5)).Read(mem)
	var pack bytes.Buffer
	bw, err := bundle.NewWriter(&pack, bundle.WriterOptions{ChunkSize: 256 << 10, Recipients: rs, Store: &bundle.StoreOptions{ChunkKey: chunkKey, Records: rw}})
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := bw.Stream("memory", bundle.KindMemory)
	sw.Write(mem)
	sw.Close()
	if _, err := bw.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "capture", Hostname: "db1", Kernel: manifest.Kernel{Release: "6.12.0-test"}}, &key); err != nil {
		t.Fatal(err)
	}
	if rw != nil {
		return mem
	}
	pr, err := bundle.NewPackReader(&pack)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := pr.Next()
		if err == bundle.ErrPackEnd {
			return mem
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(pr)
		p := filepath.Join(dir, name)
		if rec.Kind == bundle.RecordChunk {
			p = filepath.Join(dir, bundle.ChunkPath(rec.SHA256))
		}
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The capture finds its previous capture by the name it recorded, reads
// its memory from thaw serve or from a bucket, and learns its pages; a
// bundle signed by another key, sealed with another chunk key, or missing
// costs only the deltas.
func TestLoadBase(t *testing.T) {
	_, key, _ := minisign.GenerateKey(nil)
	_, other, _ := minisign.GenerateKey(nil)
	id, _ := age.GenerateX25519Identity()
	rs := []*age.X25519Recipient{id.Recipient()}
	ck := bytes.Repeat([]byte{3}, bundle.ChunkKeySize)

	dir := t.TempDir()
	st, err := store.New(dir, store.Options{Token: "w"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st)
	defer srv.Close()
	writeBase(t, dir, "one.thaw", nil, key, ck, rs)
	writeBase(t, dir, "stranger.thaw", nil, other, ck, rs)

	var lines []string
	newCapture := func(o Options) *capture {
		o.Key, o.Recipients, o.Token = key, rs, "w"
		if o.ChunkKey == nil {
			o.ChunkKey = ck
		}
		c := &capture{o: o}
		c.logf = func(f string, a ...any) { lines = append(lines, f) }
		return c
	}
	last := filepath.Join(t.TempDir(), "thaw", "last-capture")
	c := newCapture(Options{To: srv.URL + "/two.thaw", LastFile: last})
	c.recordLast()
	if b, err := os.ReadFile(last); err != nil || string(b) != "two.thaw\n" {
		t.Fatalf("recorded %q, %v", b, err)
	}
	os.WriteFile(last, []byte("one.thaw\n"), 0o600)
	c.loadBase()
	if c.pages == nil || c.pages.Len() != 300 {
		t.Fatalf("pages %v; log %q", c.pages, lines)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"another signer", Options{Base: "stranger.thaw"}, "signature"},
		{"another chunk key", Options{Base: "one.thaw", ChunkKey: bytes.Repeat([]byte{4}, bundle.ChunkKeySize)}, "decryption"},
		{"missing", Options{Base: "gone.thaw"}, "404"},
		{"a path", Options{Base: "../one.thaw"}, "not a bundle's name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.To = srv.URL + "/two.thaw"
			c := newCapture(tc.o)
			p, err := c.readBase(c.baseName())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%d pages, %v: want an error with %q", p.Len(), err, tc.want)
			}
		})
	}
	if c := newCapture(Options{To: srv.URL + "/two.thaw", Base: NoBase, LastFile: last}); c.baseName() != "" {
		t.Error("--base none still names a base")
	}

	t.Run("s3", func(t *testing.T) {
		_, cl := startVersitygw(t, true)
		o, _ := s3.Parse("s3://images/fleet/one.thaw", "")
		sink, err := openS3Sink(cl, o, SinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeBase(t, "", "", sink, key, ck, rs)
		if err := sink.Finish(); err != nil {
			t.Fatal(err)
		}
		sink.Close()
		two, _ := s3.Parse("s3://images/fleet/two.thaw", "")
		c := newCapture(Options{To: two.String(), S3: cl, S3Object: two, Base: "one.thaw"})
		p, err := c.readBase(c.baseName())
		if err != nil || p.Len() != 300 {
			t.Fatalf("%v, %v", p, err)
		}
	})
}
