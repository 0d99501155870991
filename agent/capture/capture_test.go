package capture

import (
	"bytes"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/store"
)

// TestHTTPSink: the raw-socket chunked PUT that capture uses while the
// machine is frozen lands a bundle in thaw serve's store that verifies,
// over plain http and over TLS on the same raw socket; a wrong token and
// an unknown CA are reported.
func TestHTTPSink(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"http", false}, {"https", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := store.New(dir, store.Options{Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			var seenTLS atomic.Bool
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seenTLS.Store(r.TLS != nil)
				st.ServeHTTP(w, r)
			})
			srv, roots := sinkServer(h, tc.tls)
			defer srv.Close()
			pub, key, _ := minisign.GenerateKey(nil)
			o := SinkOptions{Token: "tok", Roots: roots, Stall: 5 * time.Second}
			s, err := openHTTPSink(srv.URL+"/sub/b.thaw", o)
			if err != nil {
				t.Fatal(err)
			}
			if s.TLS() != tc.tls {
				t.Fatalf("TLS %v", s.TLS())
			}
			bw, err := bundle.NewWriter(s, bundle.WriterOptions{ChunkSize: 8192})
			if err != nil {
				t.Fatal(err)
			}
			sw, _ := bw.Stream("memory", bundle.KindMemory)
			data := bytes.Repeat([]byte("page of memory "), 50000)
			sw.Write(data)
			sw.Close()
			if _, err := bw.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "capture"}, &key); err != nil {
				t.Fatal(err)
			}
			if err := s.Finish(); err != nil {
				t.Fatalf("finish: %v", err)
			}
			s.Close()
			if seenTLS.Load() != tc.tls {
				t.Fatalf("the server saw TLS %v", seenTLS.Load())
			}
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

			o.Token = "wrong"
			bad, err := openHTTPSink(srv.URL+"/c.thaw", o)
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			bad.Write([]byte("x"))
			if err := bad.Finish(); err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("wrong token: %v", err)
			}
			if tc.tls {
				o.Roots = x509.NewCertPool()
				if _, err := openHTTPSink(srv.URL+"/d.thaw", o); err == nil || !strings.Contains(err.Error(), "--ca-file") {
					t.Fatalf("unknown CA: %v", err)
				}
			}
		})
	}
	if _, err := openHTTPSink("ftp://example.invalid/x", SinkOptions{Stall: time.Second}); err == nil || !strings.Contains(err.Error(), "not an http") {
		t.Fatalf("ftp: %v", err)
	}
}

func TestReadMailbox(t *testing.T) {
	var nonce, other [16]byte
	copy(nonce[:], "0123456789abcdef")
	copy(other[:], "fedcba9876543210")
	mk := func() []byte {
		m := make([]byte, 8*4096)
		for i := 0; i < 8; i++ {
			mailbox.Mark(m[i*4096:(i+1)*4096], nonce, i)
		}
		return m
	}
	withPayload := func(n [16]byte) []byte {
		w := mailbox.NewWriter(n)
		w.Add(mailbox.KindPlan, "plan.json", []byte(`{"ok":true,"devices":[{"kind":"disk","action":"redirect"}]}`))
		w.Add(mailbox.KindModule, "vmw_pvscsi", []byte("\x7fELF module"))
		b, err := w.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		m := mk()
		copy(m, b)
		return m
	}
	damaged := mk()
	damaged[3*4096+9] ^= 1
	corrupt := withPayload(nonce)
	corrupt[100] ^= 1
	for _, tc := range []struct {
		name  string
		mbox  []byte
		want  string
		plan  bool
		nmods int
	}{
		{"intact", mk(), "mailbox intact (8 pages, no payload)", false, 0},
		{"damaged", damaged, "7 of 8", false, 0},
		{"payload", withPayload(nonce), "payload verified", true, 1},
		{"another capture's payload", withPayload(other), "REJECTED", false, 0},
		{"corrupt payload", corrupt, "REJECTED", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl, mods, got := readMailbox(tc.mbox, nonce)
			if !strings.Contains(got, tc.want) || (pl != nil) != tc.plan || len(mods) != tc.nmods {
				t.Errorf("%q, plan %v, %d modules", got, pl != nil, len(mods))
			}
		})
	}
}

// sinkServer serves h over http, or over https with roots trusting it.
func sinkServer(h http.Handler, tls bool) (*httptest.Server, *x509.CertPool) {
	srv := httptest.NewUnstartedServer(h)
	if !tls {
		srv.Start()
		return srv, nil
	}
	srv.StartTLS()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return srv, roots
}
