package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SHA256Header is the answer header of a PUT carrying the SHA-256 of the
// stored body, in hex.
const SHA256Header = "X-Thaw-Sha256"

// tmpPrefix starts the names of uploads in progress.
const tmpPrefix = ".thaw-upload-"

// reservedPrefix starts the names of the store's own files (uploads in
// progress, grants): never served, listed or written by a client.
const reservedPrefix = ".thaw-"

// Options configures a Store.
type Options struct {
	// Token is the write token: PUT needs it. It also reads and posts
	// logs. Empty makes the store read-only: every PUT gets 403.
	Token string
	// ReadToken reads files and listings, and posts logs: the token the
	// agents get (thaw.token=).
	ReadToken string
	// LogToken only posts logs.
	LogToken string
	// Public are URL path prefixes anyone may read without a token, such
	// as the agent's boot files for iPXE ("/boot/"); "/" opens the whole
	// store (a lab store). Listings need a token unless public too.
	Public []string
	// MaxSize is the largest body a PUT may carry; 0 means no limit.
	MaxSize int64
	// MaxLogBody is the largest body of a POST /log/NAME; 0 means 1 MiB.
	MaxLogBody int64
	// MaxLogFile caps one machine's log and MaxLogTotal all logs
	// together: a POST past them gets 413. 0 means 16 MiB and 512 MiB.
	MaxLogFile, MaxLogTotal int64
	// Stall bounds each wait for an upload's next bytes: 0 means 10
	// minutes. thaw capture sends its request and the bundle's header
	// before it freezes, then nothing while the frozen machine makes its
	// image (100 s for the Debian 12 server under TCG).
	Stall time.Duration
	// Logf receives one line per request; nil discards them.
	Logf func(format string, args ...any)
}

// Roles a token can have.
type role int

const (
	roleLog role = iota
	roleRead
	roleWrite
)

// Store serves a directory; see the package documentation.
type Store struct {
	dir      string
	root     *os.Root
	opt      Options
	tokens   map[[sha256.Size]byte]role
	logMu    sync.Mutex
	logTotal int64 // bytes under logs/, held under logMu
	grantMu  sync.Mutex
	grants   []grant // one-use upload tokens, held under grantMu
}

// New opens dir and removes the leftovers of uploads that a previous run
// did not finish.
func New(dir string, opt Options) (*Store, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	if opt.MaxLogBody <= 0 {
		opt.MaxLogBody = 1 << 20
	}
	if opt.MaxLogFile <= 0 {
		opt.MaxLogFile = 16 << 20
	}
	if opt.MaxLogTotal <= 0 {
		opt.MaxLogTotal = 512 << 20
	}
	if opt.Stall <= 0 {
		opt.Stall = 10 * time.Minute
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	s := &Store{dir: dir, root: root, opt: opt, tokens: map[[sha256.Size]byte]role{}}
	// The strongest role wins when two tokens are the same.
	for _, t := range []struct {
		tok string
		r   role
	}{{opt.LogToken, roleLog}, {opt.ReadToken, roleRead}, {opt.Token, roleWrite}} {
		if t.tok != "" {
			s.tokens[sha256.Sum256([]byte(t.tok))] = t.r
		}
	}
	s.sweep()
	s.loadGrants()
	fs.WalkDir(root.FS(), "logs", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				s.logTotal += fi.Size()
			}
		}
		return nil
	})
	return s, nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.root.Close() }

// ReadOnly reports whether the store refuses uploads (it has no write
// token).
func (s *Store) ReadOnly() bool { return s.opt.Token == "" }

// sweep removes temporary files left by interrupted uploads.
func (s *Store) sweep() {
	fs.WalkDir(s.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tmpPrefix) {
			if err := s.root.Remove(p); err == nil {
				s.opt.Logf("removed %s, left by an upload that did not finish", p)
			}
		}
		return nil
	})
}

func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	// A shallow copy carries the counting body: the server must still see
	// its own body on r to handle Expect: 100-continue.
	in := &countingBody{ReadCloser: r.Body}
	r2 := *r
	r2.Body = in
	r = &r2
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.opt.Logf("%s %s %s %d in=%d out=%d %v", r.RemoteAddr, r.Method, r.URL.EscapedPath(), status, in.n, rec.n, time.Since(start).Round(time.Millisecond))
	}()
	p := r.URL.Path
	switch {
	case p == "/log" || strings.HasPrefix(p, "/log/"):
		if r.Method != http.MethodPost {
			rec.Header().Set("Allow", "POST")
			fail(rec, http.StatusMethodNotAllowed, "%s is for agent logs: POST /log/NAME appends to logs/NAME.log", p)
			return
		}
		s.postLog(rec, r)
	case strings.HasPrefix(p, GrantPrefix):
		if r.Method != http.MethodPost {
			rec.Header().Set("Allow", "POST")
			fail(rec, http.StatusMethodNotAllowed, "%s issues one-use upload tokens: POST /grant/NAME with the write token", p)
			return
		}
		s.postGrant(rec, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.get(rec, r)
	case r.Method == http.MethodPut && r.URL.Query().Has("precopy"):
		s.precopy(rec, r)
	case r.Method == http.MethodPut:
		s.put(rec, r)
	default:
		rec.Header().Set("Allow", "GET, HEAD, PUT")
		fail(rec, http.StatusMethodNotAllowed, "method %s not allowed: GET, HEAD and PUT files, POST /log/NAME", r.Method)
	}
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), code)
}

var (
	errEscape   = errors.New("the path leaves the served directory")
	errReserved = errors.New("names starting with " + reservedPrefix + " are reserved for the store (uploads in progress, grants)")
)

// resolve maps a URL path to a name for s.root: "." is the top.
func resolve(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("bad path %q", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "..":
			return "", errEscape
		case strings.HasPrefix(seg, reservedPrefix):
			return "", errReserved
		}
	}
	name := strings.Trim(path.Clean(p), "/")
	if name == "" {
		name = "."
	}
	return name, nil
}

// escapes reports whether err is os.Root refusing a path that leaves it
// (through a symbolic link).
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// fsFail answers a file system error for the URL path p.
func fsFail(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		fail(w, http.StatusNotFound, "no such file: %s", p)
	case escapes(err):
		fail(w, http.StatusForbidden, "%s leads outside the served directory (through a symbolic link)", p)
	case errors.Is(err, fs.ErrPermission):
		fail(w, http.StatusForbidden, "%s: permission denied on the server", p)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		fail(w, http.StatusInsufficientStorage, "%s: the server's disk is full", p)
	default:
		fail(w, http.StatusInternalServerError, "%s: %v", p, err)
	}
}

// pathFail answers an error of resolve.
func pathFail(w http.ResponseWriter, p string, err error) {
	switch err {
	case errReserved:
		fail(w, http.StatusNotFound, "no such file: %s (%v)", p, err)
	default:
		fail(w, http.StatusBadRequest, "%s: %v", p, err)
	}
}

// ETag is the strong entity tag of a file: inode, size and modification
// time in nanoseconds, in hex.
func ETag(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf(`"%x-%x-%x"`, ino, fi.Size(), fi.ModTime().UnixNano())
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".log", ".txt":
		return "text/plain; charset=utf-8"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

func (s *Store) get(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if r.URL.Query().Has("chunks") {
		s.have(w, r)
		return
	}
	if !s.public(p) && !s.authorized(r, roleRead) {
		unauthorized(w, r, roleRead)
		return
	}
	name, err := resolve(p)
	if err != nil {
		pathFail(w, p, err)
		return
	}
	f, err := s.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		if wait := waitParam(r); wait > 0 {
			f, err = s.waitOpen(r.Context(), name, wait)
		}
	}
	if err != nil {
		fsFail(w, p, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		fsFail(w, p, err)
		return
	}
	if fi.IsDir() {
		if !s.authorized(r, roleRead) && !s.public(strings.TrimSuffix(p, "/")+"/") {
			unauthorized(w, r, roleRead)
			return
		}
		s.list(w, r, name, f)
		return
	}
	if !fi.Mode().IsRegular() {
		fail(w, http.StatusForbidden, "%s is not a regular file", p)
		return
	}
	h := w.Header()
	h.Set("ETag", ETag(fi))
	h.Set("Content-Type", contentType(name))
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// Entry is one line of a listing.
type Entry struct {
	Name  string    `json:"name"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	Dir   bool      `json:"dir"`
	ETag  string    `json:"etag,omitempty"`
}

// Listing is the JSON answer for a directory.
type Listing struct {
	Path    string  `json:"path"`
	Entries []Entry `json:"entries"`
}

func wantJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (s *Store) list(w http.ResponseWriter, r *http.Request, name string, d *os.File) {
	des, err := d.ReadDir(-1)
	if err != nil {
		fsFail(w, r.URL.Path, err)
		return
	}
	ls := Listing{Path: "/", Entries: []Entry{}}
	if name != "." {
		ls.Path = "/" + name + "/"
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), reservedPrefix) {
			continue
		}
		// Stat through os.Root: a link leading out of the tree is left out.
		fi, err := s.root.Stat(path.Join(name, de.Name()))
		if err != nil {
			continue
		}
		e := Entry{Name: de.Name(), Size: fi.Size(), MTime: fi.ModTime().UTC(), Dir: fi.IsDir()}
		if e.Dir {
			e.Size = 0
		} else if fi.Mode().IsRegular() {
			e.ETag = ETag(fi)
		} else {
			continue
		}
		ls.Entries = append(ls.Entries, e)
	}
	sort.Slice(ls.Entries, func(i, j int) bool { return ls.Entries[i].Name < ls.Entries[j].Name })
	w.Header().Set("Cache-Control", "no-cache")
	if wantJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(ls)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	width := len("NAME")
	for _, e := range ls.Entries {
		width = max(width, len(e.Name)+1)
	}
	fmt.Fprintf(w, "%-*s  %15s  %s\n", width, "NAME", "SIZE", "MTIME (UTC)")
	for _, e := range ls.Entries {
		n := e.Name
		if e.Dir {
			n += "/"
		}
		fmt.Fprintf(w, "%-*s  %15d  %s\n", width, n, e.Size, e.MTime.Format(time.RFC3339))
	}
}

// authorized reports whether r carries a token with at least role need.
// Every token is compared, in constant time.
func (s *Store) authorized(r *http.Request, need role) bool {
	sum, ok := bearerSum(r)
	if !ok {
		return false
	}
	granted := false
	for t, rl := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], t[:]) == 1 && rl >= need {
			granted = true
		}
	}
	return granted
}

// bearerSum is the SHA-256 of r's bearer token, if it has one: tokens are
// compared, and kept, only as hashes.
func bearerSum(r *http.Request) ([sha256.Size]byte, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256([]byte(strings.TrimSpace(tok))), true
}

// public reports whether anyone may read the URL path p.
func (s *Store) public(p string) bool {
	// Whole path segments: /boot covers /boot and /boot/x, not /bootstrap.
	for _, pre := range s.opt.Public {
		pre = strings.TrimSuffix(pre, "/")
		if pre == "" || p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// tokenFlags names the server flags whose tokens have role need.
func tokenFlags(need role) string {
	switch need {
	case roleWrite:
		return "--token-file"
	case roleRead:
		return "--read-token-file (or --token-file)"
	}
	return "--log-token-file (or --read-token-file, --token-file)"
}

func unauthorized(w http.ResponseWriter, r *http.Request, need role) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="thaw"`)
	why := "no token: send Authorization: Bearer TOKEN (the contents of the server's " + tokenFlags(need) + ")"
	if r.Header.Get("Authorization") != "" {
		why = "wrong token: send Authorization: Bearer TOKEN with the contents of the server's " + tokenFlags(need)
	}
	fail(w, http.StatusUnauthorized, "%s", why)
}

// recorder notes the status and size of an answer. It passes ReadFrom on
// so that files still go out with sendfile.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.n += n
	return n, err
}

func (r *recorder) Flush() {
	http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// MaxWait bounds GET NAME?wait=SECONDS: a file that does not exist yet
// is waited for that long (a follower waiting for a capture's bundle is
// told at once when it lands), then the answer is 404 as without wait.
const MaxWait = 60 * time.Second

// waitParam is the request's wait=SECONDS, bounded by MaxWait; 0 without.
func waitParam(r *http.Request) time.Duration {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, MaxWait)
}

// waitOpen opens name once it exists, looking every 50 ms (a bundle lands
// by a rename into place), for at most wait or until the client leaves.
func (s *Store) waitOpen(ctx context.Context, name string, wait time.Duration) (*os.File, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	end := time.After(wait)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-end:
			return nil, fs.ErrNotExist
		case <-t.C:
		}
		f, err := s.root.Open(name)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
}
