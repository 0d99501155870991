package s3

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/thawlinux/thaw/images/bundle"
)

// Uploader takes a version 2 bundle's records (bundle.StoreOptions.Records)
// and stores them beside the bundle object o: each chunk as its own
// object, then the bundle object, last, once every chunk is stored. It
// sends up to Parallel chunks at once.
type Uploader struct {
	c        *Client
	o        Object
	ctx      context.Context
	parallel chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	err      error
}

// NewUploader stores records beside o: the chunks under chunks/, the
// bundle object as o.
func NewUploader(ctx context.Context, c *Client, o Object, parallel int) *Uploader {
	if parallel < 1 {
		parallel = 1
	}
	return &Uploader{c: c, o: o, ctx: ctx, parallel: make(chan struct{}, parallel)}
}

func (u *Uploader) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// Record stores one record; b may be reused by the caller once it returns.
func (u *Uploader) Record(kind byte, sum [32]byte, b []byte) error {
	if err := u.failed(); err != nil {
		return err
	}
	switch kind {
	case bundle.RecordChunk:
		o := u.o.Chunk(fmt.Sprintf("%x", sum))
		data := bytes.Clone(b)
		u.parallel <- struct{}{}
		u.wg.Add(1)
		go func() {
			defer func() { <-u.parallel; u.wg.Done() }()
			if err := u.c.Put(u.ctx, o, bytes.NewReader(data), int64(len(data))); err != nil {
				u.mu.Lock()
				if u.err == nil {
					u.err = err
				}
				u.mu.Unlock()
			}
		}()
		return nil
	case bundle.RecordBundle:
		// Every chunk first: a bundle object never names a chunk that is
		// not stored.
		if err := u.Wait(); err != nil {
			return err
		}
		return u.c.Put(u.ctx, u.o, bytes.NewReader(b), int64(len(b)))
	}
	return fmt.Errorf("put %s: record kind %q", u.o, kind)
}

// Wait waits for the chunks in flight and returns the first error.
func (u *Uploader) Wait() error {
	u.wg.Wait()
	return u.failed()
}
