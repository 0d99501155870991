package capture

import (
	"bytes"
	"encoding/binary"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/store"
)

// TestHTTPSink: the raw-socket chunked PUT that capture uses while the
// machine is frozen lands a bundle in thaw serve's store that verifies; a
// wrong token is reported with the server's answer.
func TestHTTPSink(t *testing.T) {
	dir := t.TempDir()
	st, err := store.New(dir, store.Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st)
	defer srv.Close()
	pub, key, _ := minisign.GenerateKey(nil)

	s, err := openHTTPSink(srv.URL+"/sub/b.thaw", "tok", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bw, err := bundle.NewWriter(s, bundle.WriterOptions{ChunkSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := bw.Stream("memory", bundle.KindMemory)
	data := bytes.Repeat([]byte("page of memory "), 5000)
	sw.Write(data)
	sw.Close()
	if _, err := bw.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "capture"}, &key); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	s.Close()
	f, err := os.Open(filepath.Join(dir, "sub", "b.thaw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	br, err := bundle.Open(f, fi.Size(), &pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Verify(nil); err != nil {
		t.Fatal(err)
	}

	bad, err := openHTTPSink(srv.URL+"/c.thaw", "wrong", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte("x"))
	if err := bad.Finish(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := openHTTPSink("https://example.invalid/x", "", time.Second); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("https: %v", err)
	}
}

func TestCheckMailbox(t *testing.T) {
	var nonce [16]byte
	copy(nonce[:], "0123456789abcdef")
	mk := func() []byte {
		m := make([]byte, 8*4096)
		for i := 0; i < 8; i++ {
			p := m[i*4096:]
			copy(p, MailboxMagic)
			copy(p[8:], nonce[:])
			binary.LittleEndian.PutUint32(p[24:], uint32(i))
		}
		return m
	}
	if got := checkMailbox(mk(), nonce); got != "mailbox intact (8 pages, no payload)" {
		t.Errorf("intact: %q", got)
	}
	m := mk()
	m[3*4096+9] ^= 1
	if got := checkMailbox(m, nonce); !strings.Contains(got, "7 of 8") {
		t.Errorf("damaged: %q", got)
	}
	m = mk()
	copy(m, PayloadMagic)
	if got := checkMailbox(m, nonce); !strings.Contains(got, "payload") {
		t.Errorf("payload: %q", got)
	}
}
