package capture

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/netfetch/store"
)

// precopy sends the chunks of the disks that the store lacks while the
// machine runs, reading the disks at most c.o.Rate bytes a second. What it
// sent joins c.have, and c.plain remembers every disk chunk by its
// plaintext: the frozen phase reads the disks again, hashes each chunk,
// and compresses, seals and sends only the chunks that changed since.
//
// The pre-copy ends with its own signed bundle object, NAME.precopy: the
// disks as read, with the id the capture's bundle will carry. A target
// that follows the capture (thaw.follow=1) writes it while the server
// still runs.
func (c *capture) precopy() error {
	start := time.Now()
	if c.o.S3 != nil {
		up := s3.NewUploader(context.Background(), c.o.S3, c.o.S3Object.Sibling(path.Base(c.o.S3Object.Key)+bundle.PrecopySuffix), 4)
		ix, err := c.precopyChunks(nil, up)
		if werr := up.Wait(); err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		c.precopied(ix)
		c.logf("pre-copy done in %.0fs: %d stream(s) stored in %s, and %s%s", time.Since(start).Seconds(), len(ix.Streams), c.o.S3Object.Sibling("chunks/"), c.o.S3Object, bundle.PrecopySuffix)
		return nil
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.o.Roots, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var answer string
	go func() {
		var err error
		answer, err = store.Precopy(ctx, &http.Client{Transport: tr}, c.o.To, c.o.Token, pr)
		pr.CloseWithError(err)
		done <- err
	}()
	ix, err := c.precopyChunks(pw, nil)
	pw.CloseWithError(err)
	if uerr := <-done; err == nil {
		err = uerr
	}
	if err != nil {
		return err
	}
	c.precopied(ix)
	c.logf("pre-copy done in %.0fs: %s", time.Since(start).Seconds(), answer)
	return nil
}

// precopied adds the chunks a pre-copy stored to those the store has.
func (c *capture) precopied(ix *bundle.Index) {
	for _, s := range ix.Streams {
		for _, ch := range s.Chunks {
			if !ch.Zero {
				c.have[ch.SHA256] = true
			}
		}
	}
}

// precopyChunks writes the disks' chunks and the pre-copy's bundle
// object as a pack to w, or as records to rw.
func (c *capture) precopyChunks(w io.Writer, rw bundle.RecordWriter) (*bundle.Index, error) {
	c.plain = bundle.NewPlain()
	bw, err := bundle.NewWriter(w, bundle.WriterOptions{Recipients: c.o.Recipients, Precopy: true,
		Store: &bundle.StoreOptions{Have: func(sum string) bool { return c.have[sum] }, ChunkKey: c.o.ChunkKey, Plain: c.plain, Records: rw}})
	if err != nil {
		return nil, err
	}
	// O_DIRECT, as in the frozen phase: the pre-copy leaves the page
	// cache to the services (and gives the kernel nothing to reclaim
	// when it makes room for the image).
	buf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	defer syscall.Munmap(buf)
	for i, d := range c.o.Disks {
		dr, err := openDisk(d, buf)
		if err != nil {
			return nil, err
		}
		sw, err := bw.Stream(fmt.Sprintf("disk%d", i), bundle.KindDisk)
		if err == nil {
			_, err = io.Copy(sw, &paced{r: dr, rate: c.o.Rate, start: time.Now(), what: d, logf: c.logf})
		}
		if err == nil {
			err = sw.Close()
		}
		syscall.Close(dr.fd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d, err)
		}
		st := bw.Stats()
		c.logf("pre-copy of %s read: %d chunks so far, %d sent (%d MiB)", d, st.Chunks, st.Sent, st.SentBytes>>20)
	}
	// The manifest as it stands before the freeze: the machine and its
	// disks, no memory image and nowhere to resume.
	m := *c.m
	m.Image, m.Resume, m.Mailbox = nil, nil, nil
	ix, err := bw.Finish(&m, &c.o.Key)
	if err != nil {
		return nil, err
	}
	c.id = ix.ID
	return ix, nil
}

// paced reads at most rate bytes a second on average (0: no bound), and
// says how far it is every 256 MiB.
type paced struct {
	r      io.Reader
	rate   int64
	start  time.Time
	n      int64
	what   string
	logf   func(string, ...any)
	logged int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 1<<20 {
		b = b[:1<<20]
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.rate > 0 {
		if ahead := time.Duration(float64(p.n)/float64(p.rate)*float64(time.Second)) - time.Since(p.start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	if p.n-p.logged >= 256<<20 {
		p.logged = p.n
		p.logf("pre-copy: %d MiB of %s read", p.n>>20, p.what)
	}
	return n, err
}

// DefaultChunkKey is where capture keeps this server's chunk key when none
// is given: made on the first capture into a store, so that the next ones
// share their chunks with it.
const DefaultChunkKey = "/var/lib/thaw/chunk.key"

// loadChunkKey reads c.o.ChunkKeyFile, first making it when asked to.
func (c *capture) loadChunkKey() error {
	path := c.o.ChunkKeyFile
	if _, err := os.Stat(path); os.IsNotExist(err) && c.o.MakeChunkKey {
		text, err := bundle.GenerateChunkKey()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("chunk key: %w", err)
		}
		_, err = f.WriteString(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("chunk key %s: %w", path, err)
		}
		c.logf("made the chunk key %s (keep it: the next captures share chunks through it)", path)
	}
	k, err := bundle.LoadChunkKey(path)
	if err != nil {
		return err
	}
	c.o.ChunkKey = k
	return nil
}
