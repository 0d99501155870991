package capture

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

// LastCapture is where a capture into a store records, on the server's
// own disk, the name of its bundle: the next capture of this server (the
// restored one included) finds its previous capture there, and stores its
// memory as page deltas against it.
const LastCapture = "/var/lib/thaw/last-capture"

// NoBase, as Options.Base, makes no page deltas.
const NoBase = "none"

// baseName is the bundle to make page deltas against: Options.Base, else
// the name the last capture recorded; "" for none.
func (c *capture) baseName() string {
	switch c.o.Base {
	case NoBase:
		return ""
	case "":
		b, err := os.ReadFile(c.o.LastFile)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return c.o.Base
}

// loadBase reads the memory of the previous capture, beside the bundle in
// the same store, and learns where its pages are (c.pages). Its signature
// must verify with this capture's own key. Any failure only costs the
// deltas: the capture goes on and stores its memory whole.
func (c *capture) loadBase() {
	name := c.baseName()
	if name == "" {
		return
	}
	start := time.Now()
	p, err := c.readBase(name)
	// The base's chunks passed through this process: give their memory
	// back, so that none of it joins the image.
	debug.FreeOSMemory()
	if err != nil {
		c.logf("no page deltas: the previous capture %s: %v", name, err)
		return
	}
	c.pages = p
	c.logf("page deltas against the previous capture %s: %d distinct pages known, read in %.1fs", name, p.Len(), time.Since(start).Seconds())
}

func (c *capture) readBase(name string) (*bundle.Pages, error) {
	if strings.ContainsAny(name, "/\\") || name == "." || name == ".." || strings.HasSuffix(name, bundle.PrecopySuffix) {
		return nil, fmt.Errorf("%q is not a bundle's name in the store", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var obj io.ReaderAt
	var size int64
	var src bundle.ChunkSource
	if c.o.S3 != nil {
		o := c.o.S3Object.Sibling(name)
		r, n, err := c.o.S3.Get(ctx, o)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		obj, size = r, n
		src = s3Chunks{c.o.S3, o}
	} else {
		u, err := url.Parse(c.o.To)
		if err != nil {
			return nil, err
		}
		u.RawQuery, u.Fragment = "", ""
		u.Path = path.Join(path.Dir(u.Path), name)
		opt := c.httpOptions()
		ra, err := httpra.Open(ctx, u.String(), opt)
		if err != nil {
			return nil, err
		}
		defer ra.Close()
		obj, size = ra, ra.Size()
		u.Path = path.Dir(u.Path) + "/"
		src = httpChunks{u.String(), opt}
	}
	pub, ok := c.o.Key.Public().(minisign.PublicKey)
	if !ok {
		return nil, errors.New("the signing key has no public half")
	}
	br, err := bundle.Open(obj, size, &pub)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	mem := br.Index.Stream("memory")
	if mem == nil || !br.InStore() {
		return nil, errors.New("it holds no memory image in the store")
	}
	if br.Encrypted() {
		if c.o.ChunkKey == nil {
			return nil, errors.New("it is encrypted, and this capture is not")
		}
		if err := br.UnlockChunkKey(c.o.ChunkKey); err != nil {
			return nil, err
		}
	} else if c.o.ChunkKey != nil && len(c.o.Recipients) > 0 {
		return nil, errors.New("it is plaintext, and this capture is encrypted")
	}
	br.SetChunkSource(src)
	p := bundle.NewPages()
	if err := br.IndexPages(ctx, p, mem); err != nil {
		return nil, err
	}
	// The used slots of its own swap: pages that stayed swapped out come
	// back at the same place, or at another.
	if sw := swapChunks(br); sw != nil {
		if err := br.IndexPages(ctx, p, sw); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// recordLast writes the bundle's name to LastFile, for the next capture.
func (c *capture) recordLast() {
	if c.o.LastFile == "" {
		return
	}
	name := path.Base(c.o.To)
	if c.o.S3 != nil {
		name = path.Base(c.o.S3Object.Key)
	} else if u, err := url.Parse(c.o.To); err == nil {
		name = path.Base(u.Path)
	}
	err := os.MkdirAll(filepath.Dir(c.o.LastFile), 0o700)
	if err == nil {
		err = writeSynced(c.o.LastFile, []byte(name+"\n"))
	}
	if err != nil {
		c.logf("warning: %s: %v (the next capture will store its memory whole)", c.o.LastFile, err)
	}
}

func writeSynced(file string, b []byte) error {
	tmp := file + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	return err
}

// httpChunks reads a chunk of thaw serve with one GET.
type httpChunks struct {
	dir string
	opt httpra.Options
}

func (h httpChunks) ReadChunk(ctx context.Context, sum string, p []byte) error {
	return httpra.GetFull(ctx, h.dir+bundle.ChunkPath(sum), p, h.opt)
}

// s3Chunks reads a chunk of the bucket.
type s3Chunks struct {
	cl *s3.Client
	o  s3.Object
}

func (s s3Chunks) ReadChunk(ctx context.Context, sum string, p []byte) error {
	r, n, err := s.cl.Get(ctx, s.o.Chunk(sum))
	if err != nil {
		return err
	}
	defer r.Close()
	if n != int64(len(p)) {
		return fmt.Errorf("%d bytes, the index says %d", n, len(p))
	}
	_, err = io.ReadFull(r, p)
	return err
}

// httpOptions are the requests' options for the store at To.
func (c *capture) httpOptions() httpra.Options {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.o.Roots, MinVersion: tls.VersionTLS12}}
	return httpra.Options{Token: c.o.Token, Client: &http.Client{Transport: tr}}
}

// swapChunks is the part of the bundle's disk stream that holds its own
// swap (the chunks over the swap's segments), or nil.
func swapChunks(br *bundle.Reader) *bundle.Stream {
	r := br.Manifest.Resume
	if r == nil || r.Disk < 0 || r.Disk >= len(br.Manifest.Disks) || len(r.Segments) == 0 {
		return nil
	}
	s := br.Index.Stream(br.Manifest.Disks[r.Disk].Stream)
	if s == nil {
		return nil
	}
	out := &bundle.Stream{Name: s.Name, Kind: s.Kind}
	for _, c := range s.Chunks {
		for _, g := range r.Segments {
			if !c.Zero && c.Off < g.DiskOffset+g.Length && g.DiskOffset < c.Off+c.Len {
				out.Chunks = append(out.Chunks, c)
				break
			}
		}
	}
	return out
}
