package store

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
)

func (s *Store) put(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if s.opt.Token == "" {
		fail(w, http.StatusForbidden, "this server is read-only: it was started without --token-file, so it takes no uploads")
		return
	}
	name, err := resolve(p)
	// The write token, or a one-use token for this very name (thaw
	// grant), revoked below once the request is found sound.
	granted := false
	if !s.authorized(r, roleWrite) {
		if err != nil || !s.hasGrant(r, name) {
			unauthorized(w, r, roleWrite)
			return
		}
		granted = true
	}
	if err != nil {
		fail(w, http.StatusBadRequest, "%s: %v", p, err)
		return
	}
	if name == "." || strings.HasSuffix(p, "/") {
		fail(w, http.StatusBadRequest, "PUT needs a file name: PUT /NAME or /DIR/NAME, not %s", p)
		return
	}
	if logPath(name) {
		fail(w, http.StatusForbidden, "%s: logs/ is written only by POST /log/NAME", p)
		return
	}
	if inChunks(name) {
		fail(w, http.StatusForbidden, "%s: chunks/ is written only from a pack (a version 2 bundle uploaded as NAME), each chunk checked against its hash", p)
		return
	}
	if s.opt.MaxSize > 0 && r.ContentLength > s.opt.MaxSize {
		fail(w, http.StatusRequestEntityTooLarge, "%s: %d bytes is more than this server takes (%d bytes, --max-size)", p, r.ContentLength, s.opt.MaxSize)
		return
	}
	if granted && !s.useGrant(r, name) {
		unauthorized(w, r, roleWrite)
		return
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if err := s.root.MkdirAll(dir, 0o755); err != nil {
		putFail(w, p, err)
		return
	}
	// Lstat: a symbolic link as target is replaced, not followed.
	old, err := s.root.Lstat(name)
	switch {
	case err == nil && old.IsDir():
		fail(w, http.StatusConflict, "%s is a directory", p)
		return
	case err != nil && !errors.Is(err, os.ErrNotExist):
		putFail(w, p, err)
		return
	}
	existed := err == nil

	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, tmpPrefix+base+"."+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		putFail(w, p, err)
		return
	}
	published := false
	defer func() {
		if !published {
			f.Close()
			s.root.Remove(tmp)
		}
	}()

	// Each wait for the next bytes is bounded: an upload that stalls is
	// dropped and its temporary file removed.
	var body io.Reader = &stallReader{r: r.Body, rc: http.NewResponseController(w), d: s.opt.Stall}
	if s.opt.MaxSize > 0 {
		body = http.MaxBytesReader(w, io.NopCloser(body), s.opt.MaxSize)
	}
	h := sha256.New()
	// A pack (a version 2 bundle) is unpacked: its chunks into the chunk
	// store, its bundle object as the file.
	bb := bufio.NewReaderSize(body, 1<<20)
	head, _ := bb.Peek(bundle.PackHeaderSize)
	var n int64
	if bundle.IsPack(head) {
		n, err = s.ingest(bb, io.MultiWriter(f, h), name, tmp)
	} else {
		n, err = io.CopyBuffer(io.MultiWriter(f, h), bb, make([]byte, 1<<20))
	}
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		var pe *os.PathError
		var pk *packError
		switch {
		case errors.As(err, &pk):
			fail(w, pk.code, "%s: %s", p, pk.msg)
		case errors.Is(err, bundle.ErrDamaged):
			fail(w, http.StatusBadRequest, "%s: %v; the bundle was not stored", p, err)
		case errors.As(err, &tooBig):
			fail(w, http.StatusRequestEntityTooLarge, "%s: the body is more than this server takes (%d bytes, --max-size); nothing was stored", p, tooBig.Limit)
		case errors.As(err, &pe):
			putFail(w, p, err)
		default:
			fail(w, http.StatusBadRequest, "%s: the upload broke off after %d bytes (%v); nothing was stored", p, n, err)
		}
		return
	}
	if err := f.Sync(); err != nil {
		putFail(w, p, err)
		return
	}
	if err := f.Close(); err != nil {
		putFail(w, p, err)
		return
	}
	if err := s.root.Rename(tmp, name); err != nil {
		putFail(w, p, err)
		return
	}
	published = true
	s.releaseLease(name)
	// A pre-copy of name is superseded by the bundle: thaw gc may then
	// collect what only it named (after the grace period: a target still
	// writing it reads its chunks meanwhile).
	if err := s.root.Remove(name + bundle.PrecopySuffix); err == nil {
		s.opt.Logf("/%s%s removed: /%s landed", name, bundle.PrecopySuffix, name)
	}
	if d, err := s.root.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			putFail(w, p, fmt.Errorf("syncing the directory after storing: %w", err))
			return
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	w.Header().Set(SHA256Header, sum)
	if fi, err := s.root.Stat(name); err == nil {
		w.Header().Set("ETag", ETag(fi))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	code := http.StatusCreated
	if existed {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "stored /%s: %d bytes, sha256 %s\n", name, n, sum)
}

// logPath reports whether name lies under logs/ or log/, which only
// POST /log/NAME writes: no PUT, and no grant for one.
func logPath(name string) bool {
	for _, d := range []string{"logs", "log"} {
		if name == d || strings.HasPrefix(name, d+"/") {
			return true
		}
	}
	return false
}

func putFail(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EEXIST):
		fail(w, http.StatusConflict, "%s: a file is in the way of a directory on the path", p)
	case errors.Is(err, syscall.EISDIR):
		fail(w, http.StatusConflict, "%s is a directory", p)
	default:
		fsFail(w, p, err)
	}
}

// stallReader sets the connection's read deadline before each read of an
// upload's body.
type stallReader struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	s.rc.SetReadDeadline(time.Now().Add(s.d))
	return s.r.Read(p)
}
