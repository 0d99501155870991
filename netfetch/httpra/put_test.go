package httpra

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// uploadServer takes PUTs and POSTs with a token and remembers them.
type uploadServer struct {
	token    string
	mu       sync.Mutex
	got      map[string][]byte
	chunked  map[string]bool
	lengths  map[string]int64
	badSum   bool
	failures atomic.Int64 // answer this many requests with 503 first
}

func (u *uploadServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+u.token {
		http.Error(w, "wrong token: ask the operator", http.StatusUnauthorized)
		return
	}
	if u.failures.Add(-1) >= 0 {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(b) > 1000 && r.URL.Path == "/toobig" {
		http.Error(w, "too big for me", http.StatusRequestEntityTooLarge)
		return
	}
	u.mu.Lock()
	u.got[r.Method+" "+r.URL.Path] = b
	u.chunked[r.URL.Path] = len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
	u.lengths[r.URL.Path] = r.ContentLength
	u.mu.Unlock()
	sum := sha256.Sum256(b)
	if u.badSum {
		sum[0] ^= 1
	}
	w.Header().Set(SHA256Header, hex.EncodeToString(sum[:]))
	w.WriteHeader(http.StatusCreated)
}

func newUploadServer(t *testing.T) (*uploadServer, string) {
	u := &uploadServer{token: "s3cret", got: map[string][]byte{}, chunked: map[string]bool{}, lengths: map[string]int64{}}
	ts := httptest.NewServer(u)
	t.Cleanup(ts.Close)
	return u, ts.URL
}

// countingReader counts what the transport took from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestPut(t *testing.T) {
	u, base := newUploadServer(t)
	data := newData(3<<20+5, 11)
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(100, io.SeekStart)
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(data); i += 100000 {
			pw.Write(data[i:min(i+100000, len(data))])
		}
		pw.Close()
	}()
	cases := []struct {
		name        string
		body        io.Reader
		want        []byte
		wantChunked bool
	}{
		{"pipe-chunked", pr, data, true},
		{"file-from-offset", f, data[100:], false},
		{"bytes", bytes.NewReader(data[:1000]), data[:1000], false},
		{"empty", strings.NewReader(""), []byte{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := Put(context.Background(), base+"/"+c.name, c.body, Options{Token: "s3cret"}); err != nil {
				t.Fatal(err)
			}
			u.mu.Lock()
			defer u.mu.Unlock()
			if got := u.got["PUT /"+c.name]; !bytes.Equal(got, c.want) {
				t.Fatalf("server got %d bytes, want %d", len(got), len(c.want))
			}
			p := "/" + c.name
			if u.chunked[p] != c.wantChunked {
				t.Fatalf("chunked = %v (Content-Length %d)", u.chunked[p], u.lengths[p])
			}
			if !c.wantChunked && u.lengths[p] != int64(len(c.want)) {
				t.Fatalf("Content-Length %d, want %d", u.lengths[p], len(c.want))
			}
		})
	}
}

func TestPutRefused(t *testing.T) {
	_, base := newUploadServer(t)
	body := &countingReader{r: bytes.NewReader(make([]byte, 10<<20))}
	err := Put(context.Background(), base+"/x", body, Options{Token: "wrong"})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	want := "the server refused the token (HTTP 401): check thaw.token= / --token-file; the server says: wrong token: ask the operator"
	if err.Error() != want {
		t.Fatalf("err = %q", err)
	}
	// Expect: 100-continue: the refusal came before the body.
	if n := body.n.Load(); n != 0 {
		t.Fatalf("%d bytes of the body were sent to a server that refused the token", n)
	}
	err = Put(context.Background(), base+"/toobig", bytes.NewReader(make([]byte, 2000)), Options{Token: "s3cret"})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 413 || !strings.Contains(err.Error(), "PUT "+base+"/toobig: HTTP 413 Request Entity Too Large; the server says: too big for me") {
		t.Fatalf("err = %v", err)
	}
}

func TestPutRetriesSeekable(t *testing.T) {
	u, base := newUploadServer(t)
	u.failures.Store(2)
	data := newData(5000, 12)
	r := bytes.NewReader(data)
	r.Seek(10, io.SeekStart)
	if err := Put(context.Background(), base+"/r", r, Options{Token: "s3cret", Backoff: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got := u.got["PUT /r"]; !bytes.Equal(got, data[10:]) {
		t.Fatalf("got %d bytes", len(got))
	}
	// A pipe cannot be sent twice: no retry.
	u.failures.Store(1)
	pr, pw := io.Pipe()
	go func() { pw.Write(data); pw.Close() }()
	err := Put(context.Background(), base+"/p", pr, Options{Token: "s3cret", Backoff: time.Millisecond})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("err = %v", err)
	}
}

func TestPutChecksSum(t *testing.T) {
	u, base := newUploadServer(t)
	u.badSum = true
	err := Put(context.Background(), base+"/s", bytes.NewReader([]byte("hello")), Options{Token: "s3cret"})
	if err == nil || !strings.Contains(err.Error(), "corrupted on the way") {
		t.Fatalf("err = %v", err)
	}
}

func TestPutBodyError(t *testing.T) {
	_, base := newUploadServer(t)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, 5000))
		pw.CloseWithError(errors.New("disk read failed"))
	}()
	err := Put(context.Background(), base+"/e", pr, Options{Token: "s3cret"})
	if err == nil || !strings.Contains(err.Error(), "disk read failed") {
		t.Fatalf("err = %v", err)
	}
}

func TestPostLog(t *testing.T) {
	u, base := newUploadServer(t)
	if err := PostLog(context.Background(), base+"/log/agent1", []byte("writing disk 1 of 2"), Options{Token: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if got := string(u.got["POST /log/agent1"]); got != "writing disk 1 of 2\n" {
		t.Fatalf("got %q", got)
	}
	err := PostLog(context.Background(), base+"/log/agent1", []byte("x\n"), Options{})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "none was given") {
		t.Fatalf("err = %v", err)
	}
}
