package httpra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fileServer serves one file with http.ServeContent, with faults to order.
type fileServer struct {
	mu       sync.Mutex
	data     []byte
	etag     string // "" sends none
	mod      time.Time
	token    string
	cutAfter int  // cut the connection after this many body bytes of each answer
	noRange  bool // ignore Range: always 200 with the whole file
	noHead   bool // refuse HEAD with 405
	noMatch  bool // ignore If-Match (If-Range still works)
	noCond   bool // ignore If-Match and If-Range
	status   int  // answer every request with this status
	stallOn  int  // stall the body of this request number (1-based) for a second
	requests atomic.Int64
	ranges   []string
}

func newData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func (f *fileServer) set(data []byte, etag string, mod time.Time) {
	f.mu.Lock()
	f.data, f.etag, f.mod = data, etag, mod
	f.mu.Unlock()
}

func (f *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	f.mu.Lock()
	data, etag, mod, status, cutAfter := f.data, f.etag, f.mod, f.status, f.cutAfter
	f.ranges = append(f.ranges, r.Method+" "+r.Header.Get("Range"))
	f.mu.Unlock()
	if status != 0 {
		http.Error(w, "the server's own words", status)
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	if f.noHead && r.Method == http.MethodHead {
		http.Error(w, "no HEAD here", http.StatusMethodNotAllowed)
		return
	}
	if f.noRange {
		r.Header.Del("Range")
	}
	if f.noMatch || f.noCond {
		r.Header.Del("If-Match")
		r.Header.Del("If-Unmodified-Since")
	}
	if f.noCond {
		r.Header.Del("If-Range")
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	var out http.ResponseWriter = struct{ http.ResponseWriter }{w}
	if cutAfter > 0 {
		out = &cutter{ResponseWriter: w, left: cutAfter}
	}
	if int(n) == f.stallOn {
		out = &staller{ResponseWriter: w}
	}
	http.ServeContent(out, r, "bundle", mod, bytes.NewReader(data))
}

// cutter writes left bytes of a body, then drops the connection.
type cutter struct {
	http.ResponseWriter
	left int
}

func (c *cutter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	c.ResponseWriter.Write(p[:c.left])
	http.NewResponseController(c.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

// staller sends 10 bytes, then nothing for a second, then gives up.
type staller struct {
	http.ResponseWriter
	done bool
}

func (s *staller) Write(p []byte) (int, error) {
	if !s.done {
		s.done = true
		s.ResponseWriter.Write(p[:min(10, len(p))])
		http.NewResponseController(s.ResponseWriter).Flush()
		time.Sleep(time.Second)
	}
	panic(http.ErrAbortHandler)
}

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func serve(t *testing.T, f *fileServer) string {
	t.Helper()
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return ts.URL + "/bundle.thaw"
}

func fastOpts(t *testing.T) Options {
	return Options{Backoff: time.Microsecond, Logf: t.Logf}
}

func TestReadAtRanges(t *testing.T) {
	const size = 1<<20 + 123
	data := newData(size, 1)
	servers := []struct {
		name string
		f    *fileServer
	}{
		{"ranges", &fileServer{}},
		{"cut-after-100000", &fileServer{cutAfter: 100000}}, // a cut every 100 KB: past Progress each time
		{"no-range-200", &fileServer{noRange: true}},
		{"head-refused", &fileServer{noHead: true}},
		{"no-etag", &fileServer{}},
	}
	cases := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"start", 0, 100, 100, nil},
		{"middle", 1000, 5000, 5000, nil},
		{"across-windows", 200 << 10, 300 << 10, 300 << 10, nil},
		{"last-bytes", size - 10, 10, 10, nil},
		{"open-ended", size - 10, 100, 10, io.EOF},
		{"whole", 0, size, size, nil},
		{"whole-and-more", 0, size + 1, size, io.EOF},
		{"at-end", size, 10, 0, io.EOF},
		{"beyond-end", size + 100, 10, 0, io.EOF},
		{"empty-read", 5, 0, 0, nil},
	}
	for _, sv := range servers {
		t.Run(sv.name, func(t *testing.T) {
			etag := `"v1"`
			if sv.name == "no-etag" {
				etag = ""
			}
			sv.f.set(data, etag, modTime)
			opt := fastOpts(t)
			opt.SkipLimit = -1
			r, err := Open(context.Background(), serve(t, sv.f), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Size() != size || r.ETag() != etag {
				t.Fatalf("size %d etag %q, want %d %q", r.Size(), r.ETag(), size, etag)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					p := make([]byte, c.n)
					n, err := r.ReadAt(p, c.off)
					if n != c.wantN || err != c.wantErr {
						t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d, %v", c.n, c.off, n, err, c.wantN, c.wantErr)
					}
					if !bytes.Equal(p[:n], data[min(c.off, size):min(c.off, size)+int64(n)]) {
						t.Fatalf("wrong bytes at %d", c.off)
					}
				})
			}
			if _, err := r.ReadAt(make([]byte, 1), -1); err == nil {
				t.Fatal("negative offset accepted")
			}
		})
	}
}

// TestSequentialStreams: a file read front to back in small pieces costs
// a handful of requests (windows doubling from 256 KiB), whole.
func TestSequentialStreams(t *testing.T) {
	data := newData(8<<20, 2)
	f := &fileServer{}
	f.set(data, `"s"`, modTime)
	r, err := Open(context.Background(), serve(t, f), fastOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if n := f.requests.Load(); n > 10 {
		t.Fatalf("%d requests for a sequential read: %v", n, f.ranges)
	}
}

// TestResumeAfterCuts: every answer is cut after N bytes; reads of any
// shape still return the file's bytes, by resuming where each cut fell.
func TestResumeAfterCuts(t *testing.T) {
	for _, c := range []struct{ cut, size int }{{65536, 300<<10 + 17}, {100000, 1<<20 + 17}} {
		cut, data := c.cut, newData(c.size, 3)
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			f := &fileServer{cutAfter: cut}
			f.set(data, `"c"`, modTime)
			var retries atomic.Int64
			opt := Options{Backoff: time.Microsecond, Logf: func(string, ...any) { retries.Add(1) }}
			r, err := Open(context.Background(), serve(t, f), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			p := make([]byte, len(data)/3)
			if n, err := r.ReadAt(p, 1234); n != len(p) || err != nil || !bytes.Equal(p, data[1234:1234+len(p)]) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if retries.Load() == 0 {
				t.Fatal("no resume was logged")
			}
		})
	}
}

func TestGiveUp(t *testing.T) {
	f := &fileServer{cutAfter: 1}
	f.set(newData(1000, 4), `"g"`, modTime)
	url := serve(t, f)
	r, err := Open(context.Background(), url, Options{Backoff: time.Microsecond, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f.mu.Lock()
	f.cutAfter = 0
	f.status = http.StatusServiceUnavailable
	f.mu.Unlock()
	before := f.requests.Load()
	_, err = r.ReadAt(make([]byte, 10), 500)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 retries") || !strings.Contains(err.Error(), "offset 500") {
		t.Fatalf("err = %v", err)
	}
	if n := f.requests.Load() - before; n != 4 {
		t.Fatalf("%d requests, want 4", n)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || se.Message != "the server's own words" {
		t.Fatalf("err = %#v", err)
	}
}

func TestStallResumes(t *testing.T) {
	data := newData(100000, 5)
	f := &fileServer{stallOn: 2} // request 1 is the HEAD
	f.set(data, `"st"`, modTime)
	opt := fastOpts(t)
	opt.Timeout = 100 * time.Millisecond
	r, err := Open(context.Background(), serve(t, f), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := make([]byte, len(data))
	start := time.Now()
	if n, err := r.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("the stall was waited out (%v), not cut by the timeout", d)
	}
}

func TestChangedWhileReading(t *testing.T) {
	old, repl := newData(1<<20, 6), newData(1<<20, 7)
	cases := []struct {
		name string
		f    *fileServer
		etag [2]string
		want string
	}{
		{"if-match-412", &fileServer{}, [2]string{`"v1"`, `"v2"`}, `changed while being read (ETag "v1" → "v2")`},
		{"if-range-200", &fileServer{noMatch: true}, [2]string{`"v1"`, `"v2"`}, `changed while being read (ETag "v1" → "v2")`},
		{"unconditional-206", &fileServer{noCond: true}, [2]string{`"v1"`, `"v2"`}, `changed while being read (ETag "v1" → "v2")`},
		{"weak-etag", &fileServer{}, [2]string{`W/"v1"`, `W/"v2"`}, `changed while being read (ETag W/"v1" → W/"v2")`},
		{"last-modified", &fileServer{}, [2]string{"", ""}, "changed while being read (Last-Modified Fri, 02 Jan 2026 03:04:05 GMT → Fri, 02 Jan 2026 04:04:05 GMT)"},
		{"size", &fileServer{noCond: true}, [2]string{"", ""}, "changed while being read (size 1048576 → 1000 bytes)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.f.set(old, c.etag[0], modTime)
			url := serve(t, c.f)
			r, err := Open(context.Background(), url, fastOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			p := make([]byte, 1000)
			if _, err := r.ReadAt(p, 0); err != nil {
				t.Fatal(err)
			}
			if c.name == "size" {
				c.f.set(repl[:1000], c.etag[1], modTime)
			} else {
				c.f.set(repl, c.etag[1], modTime.Add(time.Hour))
			}
			n, err := r.ReadAt(p, 600<<10)
			if !errors.Is(err, ErrChanged) {
				t.Fatalf("ReadAt after the change = %d, %v", n, err)
			}
			var ce *ChangedError
			if !errors.As(err, &ce) || ce.URL != url {
				t.Fatalf("err = %#v", err)
			}
			if want := "the bundle at " + url + " " + c.want; err.Error() != want {
				t.Fatalf("err = %q\nwant  %q", err, want)
			}
			if n != 0 {
				t.Fatalf("%d bytes returned across the change", n)
			}
		})
	}
}

func TestRangelessServer(t *testing.T) {
	data := newData(200000, 8)
	f := &fileServer{noRange: true}
	f.set(data, `"n"`, modTime)
	var logged []string
	opt := Options{Backoff: time.Millisecond, SkipLimit: 100000, Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	r, err := Open(context.Background(), serve(t, f), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := make([]byte, 1000)
	if n, err := r.ReadAt(p, 50000); n != 1000 || err != nil || !bytes.Equal(p, data[50000:51000]) {
		t.Fatalf("ReadAt within the skip limit = %d, %v", n, err)
	}
	// The answer in flight goes on: a later offset on it costs no request.
	before := f.requests.Load()
	if n, err := r.ReadAt(p, 51000); n != 1000 || err != nil || !bytes.Equal(p, data[51000:52000]) {
		t.Fatalf("sequential ReadAt = %d, %v", n, err)
	}
	if f.requests.Load() != before {
		t.Fatal("a sequential read asked anew")
	}
	if n, err := r.ReadAt(p, 199000); n != 1000 || err != nil || !bytes.Equal(p, data[199000:]) {
		t.Fatalf("ReadAt of the end = %d, %v", n, err)
	}
	// The answer is used up: nothing in flight covers the offset.
	_, err = r.ReadAt(p, 150000)
	if !errors.Is(err, ErrNoRange) || !strings.Contains(err.Error(), "offset 150000") {
		t.Fatalf("ReadAt beyond the skip limit: %v", err)
	}
	if len(logged) == 0 || !strings.Contains(logged[0], "ignores Range requests") {
		t.Fatalf("logged %q", logged)
	}
}

func TestStatusErrors(t *testing.T) {
	cases := []struct {
		name   string
		f      *fileServer
		token  string
		is     error
		want   string
		status int
	}{
		{"404", &fileServer{status: 404}, "", ErrNotFound, "no bundle at URL (HTTP 404); the server says: the server's own words", 404},
		{"401", &fileServer{token: "right"}, "wrong", ErrUnauthorized, "the server refused the token (HTTP 401): check thaw.token= / --token-file; the server says: bad token", 401},
		{"401-no-token", &fileServer{token: "right"}, "", ErrUnauthorized, "the server wants a token (HTTP 401) and none was given: set thaw.token= / --token-file; the server says: bad token", 401},
		{"403", &fileServer{status: 403}, "t", ErrUnauthorized, "the server refused the token (HTTP 403): check thaw.token= / --token-file; the server says: the server's own words", 403},
		{"418", &fileServer{status: 418}, "", nil, "GET URL: HTTP 418 I'm a teapot; the server says: the server's own words", 418},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.f.set([]byte("x"), `"x"`, modTime)
			url := serve(t, c.f)
			_, err := Open(context.Background(), url, Options{Token: c.token, Backoff: time.Millisecond})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != c.status {
				t.Fatalf("err = %v", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("%v is not %v", err, c.is)
			}
			if want := strings.ReplaceAll(c.want, "URL", url); err.Error() != want {
				t.Fatalf("err = %q\nwant  %q", err, want)
			}
			if n := c.f.requests.Load(); n > 2 {
				t.Fatalf("%d requests: a %d was retried", n, c.status)
			}
		})
	}
}

func TestNetErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()

	cases := []struct {
		name string
		url  string
		is   error
		want string
	}{
		{"dns", "http://thaw-no-such-host.invalid/b", ErrDNS, "cannot resolve host thaw-no-such-host.invalid: no such host"},
		{"refused", "http://" + closed + "/b", ErrRefused, "cannot connect to " + closed + ": connection refused"},
		{"untrusted-cert", tlsSrv.URL + "/b", ErrTLS, "TLS with " + strings.TrimPrefix(tlsSrv.URL, "https://") + " failed: the server's certificate is not signed by an authority this machine trusts"},
		{"plain-http", strings.Replace(plain.URL, "http:", "https:", 1) + "/b", ErrTLS, "the server does not speak TLS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var retries int
			start := time.Now()
			_, err := Open(context.Background(), c.url, Options{Retries: 2, Backoff: time.Millisecond, Logf: func(string, ...any) { retries++ }})
			if !errors.Is(err, c.is) {
				t.Fatalf("err = %v, want %v", err, c.is)
			}
			var ne *NetError
			if !errors.As(err, &ne) || ne.Kind != c.is {
				t.Fatalf("err = %#v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q\nwant it to say %q", err, c.want)
			}
			wantRetries := 0
			if c.is == ErrRefused {
				wantRetries = 2
			}
			if retries != wantRetries {
				t.Fatalf("%d retries, want %d", retries, wantRetries)
			}
			t.Logf("%v: %v", time.Since(start), err)
		})
	}
	// The test server's own client trusts its certificate.
	_, err = Open(context.Background(), tlsSrv.URL+"/b", Options{Client: tlsSrv.Client(), Retries: -1})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("with the trusted client: %v", err)
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x/b", "x/b", "http:///b", "http://[::1/b"} {
		if _, err := Open(context.Background(), u, Options{}); err == nil || !strings.Contains(err.Error(), "bundle URL") {
			t.Errorf("Open(%q) = %v", u, err)
		}
	}
}

func TestConcurrentReads(t *testing.T) {
	data := newData(2<<20, 9)
	f := &fileServer{cutAfter: 50000}
	f.set(data, `"cc"`, modTime)
	r, err := Open(context.Background(), serve(t, f), Options{Backoff: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20 {
				off := rng.Int64N(int64(len(data)))
				p := make([]byte, rng.IntN(200000))
				n, err := r.ReadAt(p, off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(p[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("wrong bytes at %d", off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.mu.Lock()
	idle := len(r.idle)
	r.mu.Unlock()
	if idle > maxIdle {
		t.Fatalf("%d idle answers kept", idle)
	}
}

func TestCloseAndCancel(t *testing.T) {
	f := &fileServer{}
	f.set(newData(1000, 10), `"cl"`, modTime)
	url := serve(t, f)
	r, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAt after Close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err = Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel()
	if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt after cancel: %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, noHead := range []bool{false, true} {
		f := &fileServer{noHead: noHead}
		f.set(nil, `"e"`, modTime)
		r, err := Open(context.Background(), serve(t, f), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != 0 {
			t.Fatalf("size %d", r.Size())
		}
		if n, err := r.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		r.Close()
	}
}

// The audit's reproduction: a server that sends a byte and cuts got 300
// GETs with Retries 2, because any byte reset the count. Now failures
// count in a row until a read gains Progress bytes.
func TestTrickleGivesUp(t *testing.T) {
	for _, cut := range []int{1, 7, 4096} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			f := &fileServer{}
			f.set(newData(300<<10, 3), `"t"`, modTime)
			r, err := Open(context.Background(), serve(t, f), Options{Backoff: time.Microsecond, Retries: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f.mu.Lock()
			f.cutAfter = cut
			f.mu.Unlock()
			before := f.requests.Load()
			_, err = r.ReadAt(make([]byte, 200<<10), 0)
			if err == nil || !strings.Contains(err.Error(), "retry limit") {
				t.Fatalf("err = %v, want the retry limit named", err)
			}
			if n := f.requests.Load() - before; n > 3 {
				t.Fatalf("%d GETs for a trickle with Retries 2, want 3", n)
			}
		})
	}
}

// trickler sends its body a byte every 20 ms.
type trickler struct{ http.ResponseWriter }

func (s trickler) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := s.ResponseWriter.Write(p[i : i+1]); err != nil {
			return i, err
		}
		http.NewResponseController(s.ResponseWriter).Flush()
		time.Sleep(20 * time.Millisecond)
	}
	return len(p), nil
}

func trickleServer(t *testing.T, data []byte) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out http.ResponseWriter = w
		if r.Method == http.MethodGet {
			out = trickler{w}
		}
		http.ServeContent(out, r, "bundle", modTime, bytes.NewReader(data))
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/bundle.thaw"
}

// A body that keeps the stall timer quiet but arrives below MinRate is
// cut, naming the rate.
func TestMinRate(t *testing.T) {
	r, err := Open(context.Background(), trickleServer(t, newData(4096, 1)), Options{Backoff: time.Microsecond, Retries: -1, MinRate: 1000, RateWindow: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.ReadAt(make([]byte, 4096), 0)
	var se *SlowError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "minimum rate of 1000 B/s") {
		t.Fatalf("err = %v, want a SlowError", err)
	}
}

// The overall deadline stops a transfer that goes on, and says so.
func TestDeadline(t *testing.T) {
	r, err := Open(context.Background(), trickleServer(t, newData(4096, 1)), Options{Backoff: time.Microsecond, MinRate: -1, Deadline: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.ReadAt(make([]byte, 4096), 0)
	var de *DeadlineError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "overall deadline") {
		t.Fatalf("err = %v, want a DeadlineError", err)
	}
}
