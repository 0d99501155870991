package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
)

// Chunk stores. A version 2 bundle (images/bundle) names its chunks by
// hash; they live in DIR/chunks/ab/abcd… beside the bundle object, shared
// by every bundle in DIR. They arrive only in packs: a PUT whose body is a
// pack stores each chunk after checking its hash, then checks that every
// chunk the bundle object names is present before the object lands.

// leaseDir holds the leases of captures in progress: a capture that asked
// which chunks the store has (GET NAME?chunks) relies on them until its
// bundle lands, and gc keeps them until then (or the lease expires).
const leaseDir = ".thaw-leases"

// LeaseTTL is how long a lease lasts when its bundle never lands.
const LeaseTTL = 12 * time.Hour

// Lease is one capture's claim on the chunks of a directory.
type Lease struct {
	Path    string    `json:"path"` // the bundle being captured
	Start   time.Time `json:"start"`
	Expires time.Time `json:"expires"`
}

func leaseName(bundlePath string) string {
	sum := sha256.Sum256([]byte(bundlePath))
	return path.Join(leaseDir, hex.EncodeToString(sum[:8])+".json")
}

// chunksDir is the chunk directory of the bundles in dir.
func chunksDir(dir string) string { return path.Join(dir, bundle.StoreChunks) }

// inChunks reports whether name lies in a chunk directory, which only
// packs write.
func inChunks(name string) bool {
	for _, seg := range strings.Split(name, "/") {
		if seg == bundle.StoreChunks {
			return true
		}
	}
	return false
}

// have answers GET NAME?chunks: the sha256 of every chunk beside NAME, 32
// bytes each, for the capture of NAME (write token, or NAME's one-use
// token), and takes a lease on them for it.
func (s *Store) have(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	name, err := resolve(p)
	if err != nil || name == "." {
		fail(w, http.StatusBadRequest, "GET NAME?chunks needs the name of the bundle to be uploaded, not %s", p)
		return
	}
	if !s.authorized(r, roleWrite) && !s.hasGrant(r, name) {
		unauthorized(w, r, roleWrite)
		return
	}
	dir := path.Dir(name)
	now := time.Now()
	l := Lease{Path: name, Start: now.UTC(), Expires: now.Add(LeaseTTL).UTC()}
	if err := s.writeLease(l); err != nil {
		fsFail(w, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Thaw-Lease-Expires", l.Expires.Format(time.RFC3339))
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	fs.WalkDir(s.root.FS(), chunksDir(dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if sum, err := hex.DecodeString(d.Name()); err == nil && len(sum) == 32 {
			bw.Write(sum)
			n++
		}
		return nil
	})
	bw.Flush()
	s.opt.Logf("/%s: %d chunks listed for its capture; lease until %s", name, n, l.Expires.Format(time.RFC3339))
}

func (s *Store) writeLease(l Lease) error {
	if err := s.root.MkdirAll(leaseDir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(l)
	tmp := leaseName(l.Path) + ".new"
	if err := s.root.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return s.root.Rename(tmp, leaseName(l.Path))
}

// packError is a pack that cannot be stored.
type packError struct {
	code int
	msg  string
}

func (e *packError) Error() string { return e.msg }

// ingest reads a pack from body: the chunks go to the chunk directory of
// name's directory, the bundle object to obj (name's temporary file, at
// tmp). It
// returns the object's size once every chunk the object names is in the
// store.
func (s *Store) ingest(body io.Reader, obj io.Writer, name, tmp string) (int64, error) {
	dir := path.Dir(name)
	pr, err := bundle.NewPackReader(body)
	if err != nil {
		return 0, &packError{http.StatusBadRequest, err.Error()}
	}
	cdir := chunksDir(dir)
	synced := map[string]bool{}
	var objSize int64
	var sent, known int
	for {
		rec, err := pr.Next()
		if err == bundle.ErrPackEnd {
			break
		}
		if err != nil {
			return 0, err
		}
		if rec.Kind == bundle.RecordBundle {
			if objSize, err = io.Copy(obj, pr); err != nil {
				return 0, err
			}
			continue
		}
		cpath := path.Join(dir, bundle.ChunkPath(rec.SHA256))
		if fi, err := s.root.Stat(cpath); err == nil && fi.Size() == rec.Size {
			// Already here (a pack sent again): read past it.
			if _, err := io.Copy(io.Discard, pr); err != nil {
				return 0, err
			}
			known++
			continue
		}
		if err := s.putChunk(pr, cpath); err != nil {
			return 0, err
		}
		synced[path.Dir(cpath)] = false
		sent++
	}
	for d := range synced {
		if f, err := s.root.Open(d); err == nil {
			err = f.Sync()
			f.Close()
			if err != nil {
				return 0, err
			}
		}
	}
	if f, err := s.root.Open(cdir); err == nil {
		f.Sync()
		f.Close()
	}
	missing, total, err := s.missingChunks(tmp, dir)
	if err != nil {
		return 0, err
	}
	if len(missing) > 0 {
		return 0, &packError{http.StatusConflict, fmt.Sprintf("the bundle names %d chunks this store does not hold (the first: %s): they were not in the pack, and are not here (thaw gc may have removed them after the capture asked, if its lease ran out); capture again; the bundle was not stored", len(missing), bundle.ChunkPath(missing[0]))}
	}
	s.opt.Logf("pack for /%s: %d chunks stored, %d already here; the bundle names %d", name, sent, known, total)
	return objSize, nil
}

// putChunk stores one chunk record: a temporary file, checked to its end,
// synced and renamed.
func (s *Store) putChunk(pr io.Reader, cpath string) error {
	if err := s.root.MkdirAll(path.Dir(cpath), 0o700); err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(cpath), tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, pr)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, cpath)
	}
	if err != nil {
		s.root.Remove(tmp)
	}
	return err
}

// missingChunks opens the bundle object at name and lists the chunks it
// names that are not in dir's chunk directory with their stored size.
func (s *Store) missingChunks(name, dir string) (missing []string, total int, err error) {
	f, err := s.root.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	br, err := bundle.Open(f, fi.Size(), nil)
	if err != nil {
		return nil, 0, &packError{http.StatusBadRequest, "the pack's bundle object: " + err.Error()}
	}
	defer br.Close()
	if !br.InStore() {
		return nil, 0, &packError{http.StatusBadRequest, "the pack's bundle object is a version 1 bundle (chunks inside): upload it as it is, without a pack"}
	}
	missing, total = s.missingIn(br, dir)
	return missing, total, nil
}

// missingIn lists the chunks br names that are not in dir's chunk
// directory with their stored size, and how many distinct chunks it
// names.
func (s *Store) missingIn(br *bundle.Reader, dir string) (missing []string, total int) {
	seen := map[string]bool{}
	check := func(sum string, stored int64) {
		if seen[sum] {
			return
		}
		seen[sum] = true
		if cfi, err := s.root.Stat(path.Join(dir, bundle.ChunkPath(sum))); err != nil || cfi.Size() != stored {
			missing = append(missing, sum)
		}
	}
	for _, st := range br.Index.Streams {
		for _, c := range st.Chunks {
			if c.Zero {
				continue
			}
			check(c.SHA256, c.Stored)
			for _, b := range c.Base { // a page delta's bases
				check(b.SHA256, b.Stored)
			}
		}
	}
	return missing, len(seen)
}

// releaseLease ends the lease of the capture of name, once its bundle
// landed.
func (s *Store) releaseLease(name string) {
	if err := s.root.Remove(leaseName(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.opt.Logf("releasing the lease of /%s: %v", name, err)
	}
}

// maxHave bounds the answer to GET NAME?chunks that a client reads: 32
// bytes a chunk, so 64 Mi chunks (256 TiB of 4 MiB chunks).
const maxHave = 2 << 30

// Have asks the store at bundleURL (thaw serve) which chunks it holds
// beside that bundle, taking a lease on them until the bundle lands: the
// client of GET NAME?chunks. token is the write token or NAME's one-use
// token.
func Have(ctx context.Context, client *http.Client, bundleURL, token string) (map[string]bool, error) {
	u, err := url.Parse(bundleURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: give the bundle's URL, http(s)://HOST:PORT/NAME", bundleURL)
	}
	u.RawQuery, u.Fragment = "chunks", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body)))
	}
	have := map[string]bool{}
	br := bufio.NewReaderSize(io.LimitReader(resp.Body, maxHave+1), 64<<10)
	var sum [32]byte
	for n := int64(0); ; n += 32 {
		if _, err := io.ReadFull(br, sum[:]); err != nil {
			if err == io.EOF {
				return have, nil
			}
			return nil, fmt.Errorf("GET %s: the list of chunks breaks off at byte %d: %w", u.Redacted(), n, err)
		}
		if n >= maxHave {
			return nil, fmt.Errorf("GET %s: more than %d bytes of chunk names", u.Redacted(), maxHave)
		}
		have[hex.EncodeToString(sum[:])] = true
	}
}

// precopy answers PUT NAME?precopy: a pack of chunks only (a capture's
// pre-copy of its disks while the server runs), stored in NAME's chunk
// directory for the bundle that will name them. It takes the write token
// or NAME's one-use token, which it leaves unspent for the bundle.
func (s *Store) precopy(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if s.opt.Token == "" {
		fail(w, http.StatusForbidden, "this server is read-only: it was started without --token-file, so it takes no uploads")
		return
	}
	name, err := resolve(p)
	if err != nil || name == "." || inChunks(name) || logPath(name) {
		fail(w, http.StatusBadRequest, "PUT NAME?precopy needs the name of the bundle to be uploaded, not %s", p)
		return
	}
	if !s.authorized(r, roleWrite) && !s.hasGrant(r, name) {
		unauthorized(w, r, roleWrite)
		return
	}
	body := io.Reader(&stallReader{r: r.Body, rc: http.NewResponseController(w), d: s.opt.Stall})
	if s.opt.MaxSize > 0 {
		body = http.MaxBytesReader(w, io.NopCloser(body), s.opt.MaxSize)
	}
	pr, err := bundle.NewPackReader(bufio.NewReaderSize(body, 1<<20))
	if err != nil {
		fail(w, http.StatusBadRequest, "%s: %v", p, err)
		return
	}
	dir := path.Dir(name)
	var stored, known int
	var bytes int64
	for {
		rec, err := pr.Next()
		if errors.Is(err, bundle.ErrNoBundle) {
			break
		}
		if errors.Is(err, bundle.ErrPackEnd) {
			break
		}
		if err != nil {
			fail(w, http.StatusBadRequest, "%s?precopy: %v; the chunks before it are kept", p, err)
			return
		}
		if rec.Kind == bundle.RecordBundle {
			// The pre-copy's own bundle object (disks only, marked as a
			// pre-copy), for a target that follows the capture.
			if err := s.putPrecopy(pr, name); err != nil {
				var pk *packError
				if errors.As(err, &pk) {
					fail(w, pk.code, "%s?precopy: %s; the chunks before it are kept", p, pk.msg)
				} else {
					putFail(w, p, err)
				}
				return
			}
			continue
		}
		cpath := path.Join(dir, bundle.ChunkPath(rec.SHA256))
		if fi, err := s.root.Stat(cpath); err == nil && fi.Size() == rec.Size {
			if _, err := io.Copy(io.Discard, pr); err != nil {
				fail(w, http.StatusBadRequest, "%s?precopy: %v", p, err)
				return
			}
			known++
			continue
		}
		if err := s.putChunk(pr, cpath); err != nil {
			if errors.Is(err, bundle.ErrDamaged) {
				fail(w, http.StatusBadRequest, "%s?precopy: %v", p, err)
			} else {
				putFail(w, p, err)
			}
			return
		}
		stored++
		bytes += rec.Size
	}
	s.opt.Logf("pre-copy for /%s: %d chunks stored (%d MiB), %d already here", name, stored, bytes>>20, known)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "pre-copy for /%s: %d chunks stored, %d already here\n", name, stored, known)
}

// maxPrecopyObject bounds a pre-copy's bundle object: its index names the
// disks' chunks, about 150 bytes each.
const maxPrecopyObject = 64 << 20

// putPrecopy stores a pre-copy's bundle object as NAME.precopy once it
// checks out: a version 2 bundle marked as a pre-copy, every chunk it
// names in the store.
func (s *Store) putPrecopy(r io.Reader, name string) error {
	b, err := io.ReadAll(io.LimitReader(r, maxPrecopyObject+1))
	if err != nil {
		return err
	}
	if len(b) > maxPrecopyObject {
		return &packError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the pre-copy's bundle object is more than %d bytes", maxPrecopyObject)}
	}
	br, err := bundle.Open(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		return &packError{http.StatusBadRequest, "the pre-copy's bundle object: " + err.Error()}
	}
	defer br.Close()
	if !br.Index.Precopy {
		return &packError{http.StatusBadRequest, "the bundle object of a pre-copy must be marked as one: upload a capture's bundle without ?precopy"}
	}
	dir := path.Dir(name)
	if missing, _ := s.missingIn(br, dir); len(missing) > 0 {
		return &packError{http.StatusConflict, fmt.Sprintf("the pre-copy names %d chunks this store does not hold (the first: %s)", len(missing), bundle.ChunkPath(missing[0]))}
	}
	// As a chunk is stored: a temporary file, synced and renamed.
	if err := s.putChunk(bytes.NewReader(b), name+bundle.PrecopySuffix); err != nil {
		return err
	}
	if d, err := s.root.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return err
		}
	}
	s.opt.Logf("pre-copy bundle object /%s%s stored (%d bytes)", name, bundle.PrecopySuffix, len(b))
	return nil
}

// Precopy sends a pre-copy's pack (its chunks, then its own bundle
// object marked as a pre-copy) to the store at bundleURL as the pre-copy
// of that bundle: the client of PUT NAME?precopy. It returns the store's one-line answer.
func Precopy(ctx context.Context, client *http.Client, bundleURL, token string, body io.Reader) (string, error) {
	u, err := url.Parse(bundleURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: give the bundle's URL, http(s)://HOST:PORT/NAME", bundleURL)
	}
	u.RawQuery, u.Fragment = "precopy", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("PUT %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(answer)))
	}
	return strings.TrimSpace(string(answer)), nil
}
