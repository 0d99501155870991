package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thawlinux/thaw/netfetch/httpra"
)

const token = "tok-123"

// logSink collects a store's request log.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// waitFor waits for a log line matching re and returns it.
func (l *logSink) waitFor(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, s := range l.lines {
			if rx.MatchString(s) {
				l.mu.Unlock()
				return s
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no log line matches %q", re)
	return ""
}

type testStore struct {
	*Store
	url string
	dir string
	log *logSink
}

func newStore(t *testing.T, opt Options) *testStore {
	t.Helper()
	dir := t.TempDir()
	return newStoreIn(t, dir, opt)
}

// newStoreIn opens a store on dir. The tests of other things than access
// get a lab store anyone may read (Public "/") unless they set Public or a
// read token; TestAccess checks the roles.
func newStoreIn(t *testing.T, dir string, opt Options) *testStore {
	t.Helper()
	if opt.Public == nil && opt.ReadToken == "" {
		opt.Public = []string{"/"}
	}
	ls := &logSink{}
	opt.Logf = ls.logf
	s, err := New(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &testStore{s, ts.URL, dir, ls}
}

func (ts *testStore) write(t *testing.T, name string, data []byte) {
	t.Helper()
	p := filepath.Join(ts.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// raw sends a request as written, for paths a client would clean, and
// returns the status code.
func raw(t *testing.T, base, request string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestGetRanges(t *testing.T) {
	ts := newStore(t, Options{})
	const size = 100000
	data := randBytes(size, 1)
	ts.write(t, "a.bundle", data)
	cases := []struct {
		name, rng    string
		status       int
		from, to     int
		contentRange string
	}{
		{"whole", "", 200, 0, size, ""},
		{"single", "bytes=10-19", 206, 10, 20, "bytes 10-19/100000"},
		{"open-ended", "bytes=99990-", 206, 99990, size, "bytes 99990-99999/100000"},
		{"suffix", "bytes=-5", 206, size - 5, size, "bytes 99995-99999/100000"},
		{"at-end", "bytes=99999-99999", 206, size - 1, size, "bytes 99999-99999/100000"},
		{"past-end-clipped", "bytes=99000-200000", 206, 99000, size, "bytes 99000-99999/100000"},
		{"beyond-end", "bytes=100000-", 416, 0, 0, "bytes */100000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, "GET", ts.url+"/a.bundle", nil, "Range", c.rng)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Range") != c.contentRange {
				t.Fatalf("status %d Content-Range %q", resp.StatusCode, resp.Header.Get("Content-Range"))
			}
			if c.status < 300 && !bytes.Equal(body, data[c.from:c.to]) {
				t.Fatalf("got %d bytes, want data[%d:%d]", len(body), c.from, c.to)
			}
		})
	}
	resp, body := do(t, "HEAD", ts.url+"/a.bundle", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.ContentLength != size || len(body) != 0 || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d, length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	if !regexp.MustCompile(`^"[0-9a-f]+-186a0-[0-9a-f]+"$`).MatchString(etag) {
		t.Fatalf("ETag %q is not strong INODE-SIZE-MTIME", etag)
	}
	cond := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"if-none-match", []string{"If-None-Match", etag}, 304},
		{"if-none-match-other", []string{"If-None-Match", `"x"`}, 200},
		{"if-range-same", []string{"Range", "bytes=0-9", "If-Range", etag}, 206},
		{"if-range-other", []string{"Range", "bytes=0-9", "If-Range", `"x"`}, 200},
		{"if-match-other", []string{"If-Match", `"x"`}, 412},
	}
	for _, c := range cond {
		t.Run(c.name, func(t *testing.T) {
			if resp, _ := do(t, "GET", ts.url+"/a.bundle", nil, c.hdr...); resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
		})
	}
	if resp, _ := do(t, "GET", ts.url+"/nope", nil); resp.StatusCode != 404 {
		t.Fatalf("missing file: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "DELETE", ts.url+"/a.bundle", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") == "" {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	ts.log.waitFor(t, `^127\.0\.0\.1:\d+ GET /a\.bundle 206 in=0 out=10 \S+$`)
}

func TestListing(t *testing.T) {
	ts := newStore(t, Options{})
	ts.write(t, "a.bundle", []byte("12345"))
	ts.write(t, "sub/b.bundle", []byte("123"))
	ts.write(t, tmpPrefix+"a.bundle.0000", []byte("partial"))
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(ts.dir, "out-link"))
	os.Symlink("a.bundle", filepath.Join(ts.dir, "in-link"))

	for _, how := range [][]string{{"/", "Accept", "application/json"}, {"/?format=json"}} {
		resp, body := do(t, "GET", ts.url+how[0], nil, how[1:]...)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%v: %d %s", how, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var ls Listing
		if err := json.Unmarshal(body, &ls); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ls.Entries {
			names = append(names, fmt.Sprintf("%s:%d:%v", e.Name, e.Size, e.Dir))
			if !e.Dir && e.ETag == "" || e.MTime.IsZero() {
				t.Errorf("entry %+v lacks an ETag or mtime", e)
			}
		}
		if ls.Path != "/" || strings.Join(names, " ") != "a.bundle:5:false in-link:5:false sub:0:true" {
			t.Fatalf("%v: listing %s %v", how, ls.Path, names)
		}
	}
	resp, body := do(t, "GET", ts.url+"/sub/?format=json", nil)
	var ls Listing
	if json.Unmarshal(body, &ls); resp.StatusCode != 200 || ls.Path != "/sub/" || len(ls.Entries) != 1 || ls.Entries[0].Name != "b.bundle" {
		t.Fatalf("sub: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", ts.url+"/", nil)
	text := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!regexp.MustCompile(`(?m)^a\.bundle +5  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^sub/ +0  `).MatchString(text) || strings.Contains(text, tmpPrefix) || strings.Contains(text, "out-link") {
		t.Fatalf("text listing:\n%s", text)
	}
}

func put(t *testing.T, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, "PUT", url, body, hdr...)
}

func TestPutAuth(t *testing.T) {
	ro := newStore(t, Options{})
	rw := newStore(t, Options{Token: token})
	cases := []struct {
		name   string
		s      *testStore
		auth   string
		status int
		body   string
	}{
		{"read-only", ro, "Bearer " + token, 403, "read-only"},
		{"no-token", rw, "", 401, "no token"},
		{"wrong-token", rw, "Bearer nope", 401, "wrong token"},
		{"token-prefix", rw, "Bearer " + token[:3], 401, "wrong token"},
		{"basic", rw, "Basic " + token, 401, "wrong token"},
		{"right", rw, "Bearer " + token, 201, "stored /x.bundle: 5 bytes, sha256 "},
		{"again", rw, "bearer " + token, 200, "stored /x.bundle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := put(t, c.s.url+"/x.bundle", strings.NewReader("hello"), "Authorization", c.auth)
			if resp.StatusCode != c.status || !strings.Contains(string(body), c.body) {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer realm="thaw"` {
				t.Fatal("no WWW-Authenticate")
			}
			_, err := os.Stat(filepath.Join(c.s.dir, "x.bundle"))
			if stored := err == nil; stored != (c.status < 300) && c.s == ro {
				t.Fatalf("stored = %v", stored)
			}
		})
	}
}

func TestPutStores(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	data := randBytes(3<<20+7, 2)
	sum := sha256.Sum256(data)
	auth := []string{"Authorization", "Bearer " + token}
	// Chunked: a body of unknown length.
	pr, pw := io.Pipe()
	go func() { pw.Write(data); pw.Close() }()
	resp, body := put(t, ts.url+"/deep/er/c.bundle", pr, auth...)
	if resp.StatusCode != 201 || resp.Header.Get(SHA256Header) != hex.EncodeToString(sum[:]) || resp.Header.Get("ETag") == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got, _ := os.ReadFile(filepath.Join(ts.dir, "deep/er/c.bundle"))
	if !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes", len(got))
	}
	ts.log.waitFor(t, fmt.Sprintf(`PUT /deep/er/c\.bundle 201 in=%d out=\d+ `, len(data)))
	// With a Content-Length, replacing; the ETag changes.
	before, _ := do(t, "HEAD", ts.url+"/deep/er/c.bundle", nil)
	resp, _ = put(t, ts.url+"/deep/er/c.bundle", bytes.NewReader(data[:100]), auth...)
	after, _ := do(t, "HEAD", ts.url+"/deep/er/c.bundle", nil)
	if resp.StatusCode != 200 || after.ContentLength != 100 || before.Header.Get("ETag") == after.Header.Get("ETag") {
		t.Fatalf("replace: %d, length %d, ETag %s → %s", resp.StatusCode, after.ContentLength, before.Header.Get("ETag"), after.Header.Get("ETag"))
	}
	assertNoTemp(t, ts.dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestPutMaxSize(t *testing.T) {
	ts := newStore(t, Options{Token: token, MaxSize: 1000})
	auth := []string{"Authorization", "Bearer " + token}
	resp, body := put(t, ts.url+"/big", bytes.NewReader(make([]byte, 1001)), auth...)
	if resp.StatusCode != 413 || !strings.Contains(string(body), "1000 bytes") {
		t.Fatalf("with Content-Length: %d %s", resp.StatusCode, body)
	}
	pr, pw := io.Pipe()
	go func() { pw.Write(make([]byte, 5000)); pw.Close() }()
	resp, body = put(t, ts.url+"/big", pr, auth...)
	if resp.StatusCode != 413 {
		t.Fatalf("chunked: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a too big upload was stored: %v", err)
	}
	if resp, _ := put(t, ts.url+"/small", bytes.NewReader(make([]byte, 1000)), auth...); resp.StatusCode != 201 {
		t.Fatalf("at the limit: %d", resp.StatusCode)
	}
	assertNoTemp(t, ts.dir)
}

// TestAtomicPublish: while an upload runs, readers see the old file whole
// (or nothing for a new name), then the new file whole.
func TestAtomicPublish(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	old, repl := randBytes(200000, 3), randBytes(300000, 4)
	ts.write(t, "r.bundle", old)
	for _, name := range []string{"r.bundle", "new.bundle"} {
		t.Run(name, func(t *testing.T) {
			pr, pw := io.Pipe()
			done := make(chan *http.Response)
			go func() {
				req, _ := http.NewRequest("PUT", ts.url+"/"+name, pr)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
				}
				done <- resp
			}()
			for i := 0; i < len(repl); i += 10000 {
				if _, err := pw.Write(repl[i : i+10000]); err != nil {
					t.Fatal(err)
				}
				resp, body := do(t, "GET", ts.url+"/"+name, nil)
				switch {
				case name == "new.bundle" && resp.StatusCode == 404:
				case name == "r.bundle" && resp.StatusCode == 200 && bytes.Equal(body, old):
				default:
					t.Fatalf("during the upload: %d, %d bytes", resp.StatusCode, len(body))
				}
			}
			pw.Close()
			if resp := <-done; resp == nil || resp.StatusCode/100 != 2 {
				t.Fatalf("upload: %v", resp)
			}
			if resp, body := do(t, "GET", ts.url+"/"+name, nil); resp.StatusCode != 200 || !bytes.Equal(body, repl) {
				t.Fatalf("after: %d, %d bytes", resp.StatusCode, len(body))
			}
		})
	}
}

// TestInterruptedUpload: a client that closes its connection in the middle
// of a body leaves neither a target nor a temporary file.
func TestInterruptedUpload(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	ts.write(t, "keep.bundle", []byte("old"))
	cases := []struct{ name, head, body string }{
		{"content-length", "Content-Length: 100000\r\n", strings.Repeat("x", 5000)},
		{"chunked", "Transfer-Encoding: chunked\r\n", "1388\r\n" + strings.Repeat("x", 5000) + "\r\n"},
	}
	for _, c := range cases {
		for _, target := range []string{"cut.bundle", "keep.bundle"} {
			t.Run(c.name+"/"+target, func(t *testing.T) {
				conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n%s", target, token, c.head, c.body)
				time.Sleep(50 * time.Millisecond)
				conn.Close()
				ts.log.waitFor(t, `PUT /`+regexp.QuoteMeta(target)+` 400 in=5000 `)
				assertNoTemp(t, ts.dir)
				got, err := os.ReadFile(filepath.Join(ts.dir, target))
				if target == "cut.bundle" && !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a partial target exists: %d bytes, %v", len(got), err)
				}
				if target == "keep.bundle" && string(got) != "old" {
					t.Fatalf("the old file became %q", got)
				}
				ts.log.mu.Lock()
				ts.log.lines = nil
				ts.log.mu.Unlock()
			})
		}
	}
}

func TestPathEscapes(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(ts.dir, "link"))
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(ts.dir, "filelink"))
	ts.write(t, "a.bundle", []byte("a"))
	os.Mkdir(filepath.Join(ts.dir, "sub"), 0o755)
	auth := "Authorization: Bearer " + token + "\r\n"
	cases := []struct {
		name, method, path string
		status             int
	}{
		{"get-dotdot", "GET", "/../etc/passwd", 400},
		{"get-dotdot-deep", "GET", "/sub/../../etc/passwd", 400},
		{"get-encoded-dotdot", "GET", "/%2e%2e/etc/passwd", 400},
		{"get-through-link", "GET", "/link/secret", 403},
		{"get-file-link", "GET", "/filelink", 403},
		{"get-temp-name", "GET", "/" + tmpPrefix + "x", 404},
		{"put-dotdot", "PUT", "/../x", 400},
		{"put-dotdot-deep", "PUT", "/a/../../x", 400},
		{"put-encoded", "PUT", "/sub/%2E%2E/%2e%2e/x", 400},
		{"put-through-link", "PUT", "/link/x", 403},
		{"put-through-link-deep", "PUT", "/link/d/x", 403},
		{"put-temp-name", "PUT", "/" + tmpPrefix + "x", 400},
		{"put-root", "PUT", "/", 400},
		{"put-dir", "PUT", "/sub", 409},
		{"put-under-file", "PUT", "/a.bundle/x", 409},
		{"put-logs", "PUT", "/logs/x.log", 403},
		{"put-absolute-ish", "PUT", "//etc/x", 201},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: 2\r\nConnection: close\r\n\r\nhi", c.method, c.path, auth)
			if got := raw(t, ts.url, req); got != c.status {
				t.Fatalf("%s %s: %d, want %d", c.method, c.path, got, c.status)
			}
		})
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Fatalf("the outside directory now holds %d entries", len(ents))
	}
	if b, _ := os.ReadFile(filepath.Join(ts.dir, "etc/x")); string(b) != "hi" {
		t.Fatal("//etc/x did not land inside the store")
	}
	// PUT over a link replaces the link, not the file it points to.
	if got := raw(t, ts.url, "PUT /filelink HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 2\r\nConnection: close\r\n\r\nhi"); got != 200 {
		t.Fatalf("PUT over a link: %d", got)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
		t.Fatalf("the file outside was changed to %q", b)
	}
}

func TestLog(t *testing.T) {
	ts := newStore(t, Options{Token: token, MaxLogBody: 100})
	auth := []string{"Authorization", "Bearer " + token}
	resp, body := do(t, "POST", ts.url+"/log/agent-1.eth0", strings.NewReader("disk 1 of 2 written\r\nred \x1b[31m\xff\n"), auth...)
	if resp.StatusCode != 204 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	do(t, "POST", ts.url+"/log/agent-1.eth0", strings.NewReader("done"), auth...)
	b, err := os.ReadFile(filepath.Join(ts.dir, "logs/agent-1.eth0.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1:\d+ disk 1 of 2 written
\S+ 127\.0\.0\.1:\d+ red \\x1b\[31m\\xff
\S+ 127\.0\.0\.1:\d+ done
$`)
	if !want.Match(b) {
		t.Fatalf("log file:\n%s", b)
	}
	if resp, got := do(t, "GET", ts.url+"/logs/agent-1.eth0.log", nil); resp.StatusCode != 200 || !bytes.Equal(got, b) {
		t.Fatalf("GET of the log: %d", resp.StatusCode)
	}
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
	}{
		{"no-token", "POST", "/log/a", "x", nil, 401},
		{"wrong-token", "POST", "/log/a", "x", []string{"Authorization", "Bearer x"}, 401},
		{"too-big", "POST", "/log/a", strings.Repeat("x", 101), auth, 413},
		{"bad-name", "POST", "/log/.hidden", "x", auth, 400},
		{"no-name", "POST", "/log/", "x", auth, 400},
		{"nested", "POST", "/log/a/b", "x", auth, 400},
		{"get", "GET", "/log/a", "", nil, 405},
		{"post-elsewhere", "POST", "/a", "x", auth, 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if resp, body := do(t, c.method, ts.url+c.path, strings.NewReader(c.body), c.hdr...); resp.StatusCode != c.status {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	if got := raw(t, ts.url, "POST /log/../x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"); got != 400 {
		t.Fatalf("POST /log/../x: %d", got)
	}
	ro := newStore(t, Options{})
	if resp, _ := do(t, "POST", ro.url+"/log/a", strings.NewReader("x")); resp.StatusCode != 204 {
		t.Fatalf("a read-only store refused a log: %d", resp.StatusCode)
	}
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", tmpPrefix+"x.1234"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(dir, "d", "x"), []byte("whole"), 0o644)
	ts := newStoreIn(t, dir, Options{})
	assertNoTemp(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "d", "x")); err != nil {
		t.Fatal(err)
	}
	ts.log.waitFor(t, "removed d/"+tmpPrefix+`x\.1234`)
}

// TestWithClient: the store against netfetch/httpra, its client.
func TestWithClient(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	data := randBytes(2<<20, 5)
	opt := httpra.Options{Token: token, Backoff: time.Millisecond}
	ctx := context.Background()
	if err := httpra.Put(ctx, ts.url+"/w/b.bundle", bytes.NewReader(data), opt); err != nil {
		t.Fatal(err)
	}
	r, err := httpra.Open(ctx, ts.url+"/w/b.bundle", opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
	// The bundle replaced under the reader's feet.
	if err := httpra.Put(ctx, ts.url+"/w/b.bundle", bytes.NewReader(data[:1000]), opt); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(make([]byte, 10), 5000); !errors.Is(err, httpra.ErrChanged) {
		t.Fatalf("after the replacement: %v", err)
	}
	if err := httpra.PostLog(ctx, ts.url+"/log/w", []byte("hello"), opt); err != nil {
		t.Fatal(err)
	}
	_, err = httpra.Open(ctx, ts.url+"/w/none", opt)
	if !errors.Is(err, httpra.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	err = httpra.Put(ctx, ts.url+"/w/x", strings.NewReader("x"), httpra.Options{Token: "bad"})
	if !errors.Is(err, httpra.ErrUnauthorized) || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong token: %v", err)
	}
	if SHA256Header != httpra.SHA256Header {
		t.Fatal("the two packages disagree on the SHA-256 header")
	}
}

// The audit: GET, HEAD and listings needed no token, and POST /log took
// anything without bound. Each role, each request.
func TestAccess(t *testing.T) {
	const read, logTok = "read-456", "log-789"
	ts := newStore(t, Options{Token: token, ReadToken: read, LogToken: logTok, Public: []string{"/boot/"}, MaxLogFile: 300, MaxLogTotal: 500})
	ts.write(t, "server.thaw", []byte("bundle bytes"))
	ts.write(t, "boot/vmlinuz", []byte("kernel"))
	ts.write(t, "bootstrap.thaw", []byte("another bundle"))
	for _, tc := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "/server.thaw", "", 401},
		{"HEAD", "/server.thaw", "", 401},
		{"GET", "/server.thaw", logTok, 401},
		{"GET", "/server.thaw", "wrong", 401},
		{"GET", "/server.thaw", read, 200},
		{"GET", "/server.thaw", token, 200},
		{"GET", "/", "", 401},
		{"GET", "/?format=json", logTok, 401},
		{"GET", "/", read, 200},
		{"GET", "/boot/vmlinuz", "", 200},
		{"GET", "/boot/", "", 200},
		{"GET", "/bootstrap.thaw", "", 401},
		{"GET", "/logs/", "", 401},
		{"PUT", "/new.thaw", "", 401},
		{"PUT", "/new.thaw", read, 401},
		{"PUT", "/new.thaw", logTok, 401},
		{"PUT", "/new.thaw", token, 201},
		{"POST", "/log/m1", "", 401},
		{"POST", "/log/m1", "wrong", 401},
		{"POST", "/log/m1", logTok, 204},
		{"POST", "/log/m1", read, 204},
	} {
		var hdr []string
		if tc.tok != "" {
			hdr = []string{"Authorization", "Bearer " + tc.tok}
		}
		resp, _ := do(t, tc.method, ts.url+tc.path, strings.NewReader("a line\n"), hdr...)
		if resp.StatusCode != tc.want && !(tc.want == 201 && resp.StatusCode/100 == 2) {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.tok, resp.StatusCode, tc.want)
		}
	}
	// The caps: one machine's log, then all logs together.
	hdr := []string{"Authorization", "Bearer " + logTok}
	line := strings.NewReader(strings.Repeat("x", 100) + "\n")
	var codes []int
	for i := 0; i < 4; i++ {
		line.Seek(0, 0)
		resp, _ := do(t, "POST", ts.url+"/log/m2", line, hdr...)
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 204 || codes[3] != 413 {
		t.Errorf("posts to one log past its 300-byte cap: %v, want 204 … 413", codes)
	}
	for i := 3; ; i++ {
		line.Seek(0, 0)
		resp, body := do(t, "POST", ts.url+fmt.Sprintf("/log/m%d", i), line, hdr...)
		if resp.StatusCode == 413 {
			if !strings.Contains(string(body), "logs/ holds its limit") {
				t.Errorf("413 without naming the total cap: %s", body)
			}
			break
		}
		if i > 10 {
			t.Fatal("the 500-byte cap on all logs never applied")
		}
	}
	// An upload is readable by the server's user only.
	if fi, err := os.Stat(filepath.Join(ts.dir, "new.thaw")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("uploaded file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

// An upload that stalls longer than Stall is dropped and nothing is
// stored; one that pauses for less is stored.
func TestUploadStall(t *testing.T) {
	ts := newStore(t, Options{Token: token, Stall: 1500 * time.Millisecond})
	put := func(name string, pauseFirst, pauseMid time.Duration) int {
		pr, pw := io.Pipe()
		go func() {
			time.Sleep(pauseFirst)
			pw.Write([]byte("first half "))
			time.Sleep(pauseMid)
			pw.Write([]byte("second half"))
			pw.Close()
		}()
		req, _ := http.NewRequest("PUT", ts.url+"/"+name, pr)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("late.thaw", 300*time.Millisecond, 300*time.Millisecond); code/100 != 2 {
		t.Errorf("an upload with pauses of 300 ms (stall 1.5 s): %d", code)
	}
	if code := put("stalled.thaw", 0, 4*time.Second); code/100 == 2 {
		t.Errorf("an upload that stalls 4 s in its body was stored: %d", code)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "stalled.thaw")); err == nil {
		t.Error("the stalled upload left a file")
	}
}

// GET NAME?wait=SECONDS holds a request for a file that is not there yet
// and answers it once an upload puts it in place; a file that does not
// come is 404 after the wait, as without it.
func TestGetWait(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	data := randBytes(1000, 3)
	got := make(chan *http.Response, 1)
	go func() {
		resp, _ := do(t, "GET", ts.url+"/b.thaw?wait=30", nil)
		got <- resp
	}()
	// The request is held: it has not answered before the upload.
	select {
	case resp := <-got:
		t.Fatalf("answered %d before the file was there", resp.StatusCode)
	case <-time.After(300 * time.Millisecond):
	}
	if resp, body := put(t, ts.url+"/b.thaw", bytes.NewReader(data), "Authorization", "Bearer "+token); resp.StatusCode != 201 {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	if resp := <-got; resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("the held GET: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
	for _, q := range []string{"?wait=1", "", "?wait=x"} {
		if resp, _ := do(t, "GET", ts.url+"/never.thaw"+q, nil); resp.StatusCode != 404 {
			t.Errorf("a file that never comes (%q): %d", q, resp.StatusCode)
		}
	}
}
