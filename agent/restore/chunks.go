package restore

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

// ChunksBeside reads the chunks of a version 2 bundle from the chunks/
// directory beside the bundle object at ref (a URL, a file, file:PATH),
// each opened through store with opt.
func ChunksBeside(store Store, ref string, opt httpra.Options) bundle.ChunkSource {
	return &besideChunks{store: store, base: chunkBase(ref), opt: opt}
}

// chunkBase is the directory of ref, ending in a slash.
func chunkBase(ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		if u, err := url.Parse(ref); err == nil {
			u.Path, u.RawPath, u.RawQuery, u.Fragment = path.Dir(u.Path), "", "", ""
			return strings.TrimSuffix(u.String(), "/") + "/"
		}
	}
	if p, ok := strings.CutPrefix(ref, bootparam.SchemeFile); ok {
		return bootparam.SchemeFile + filepath.Dir(p) + "/"
	}
	return filepath.Dir(ref) + "/"
}

type besideChunks struct {
	store Store
	base  string
	opt   httpra.Options
}

// WholeReader is a Store that reads a whole object in one request (a
// store's chunk), rather than opening it for random access.
type WholeReader interface {
	ReadWhole(ctx context.Context, ref string, p []byte, opt httpra.Options) error
}

// ReadWhole reads an http(s) object with one GET, a file with one read.
func (f Files) ReadWhole(ctx context.Context, ref string, p []byte, opt httpra.Options) error {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return httpra.GetFull(ctx, ref, p, opt)
	}
	return readWhole(ctx, f, ref, p, opt)
}

// ReadChunk reads the chunk, which must be exactly len(p) bytes.
func (b *besideChunks) ReadChunk(ctx context.Context, sum string, p []byte) error {
	if w, ok := b.store.(WholeReader); ok {
		return w.ReadWhole(ctx, b.base+bundle.ChunkPath(sum), p, b.opt)
	}
	return readWhole(ctx, b.store, b.base+bundle.ChunkPath(sum), p, b.opt)
}

// readWhole opens ref and reads all of it into p.
func readWhole(ctx context.Context, store Store, ref string, p []byte, opt httpra.Options) error {
	blob, err := store.Open(ctx, ref, opt)
	if err != nil {
		return err
	}
	defer blob.Close()
	if blob.Size() != int64(len(p)) {
		return fmt.Errorf("%d bytes, the index says %d", blob.Size(), len(p))
	}
	if _, err := blob.ReadAt(p, 0); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// ChunkURLs reads each chunk with one GET of the URL that urlOf gives for
// its sum: a presigned list's, or a URL presigned on demand.
func ChunkURLs(store Store, urlOf func(sum string) (string, error), opt httpra.Options) bundle.ChunkSource {
	return &urlChunks{store: store, urlOf: urlOf, opt: opt}
}

type urlChunks struct {
	store Store
	urlOf func(string) (string, error)
	opt   httpra.Options
}

func (u *urlChunks) ReadChunk(ctx context.Context, sum string, p []byte) error {
	ref, err := u.urlOf(sum)
	if err != nil {
		return err
	}
	if w, ok := u.store.(WholeReader); ok {
		return w.ReadWhole(ctx, ref, p, u.opt)
	}
	return readWhole(ctx, u.store, ref, p, u.opt)
}

// presigned reports whether ref carries its own signature (a presigned
// S3 URL): no bearer token goes with it, which the store would take for
// a second way of signing.
func presigned(ref string) bool {
	u, err := url.Parse(ref)
	return err == nil && u.Query().Get("X-Amz-Signature") != ""
}

// ReadList reads the presigned list (thaw presign) that blob holds; nil,
// nil when blob does not start like one.
func ReadList(blob Blob) (*s3.List, error) {
	head := make([]byte, len(s3.ListMagic))
	if blob.Size() > s3.MaxList || blob.Size() < int64(len(head)) {
		return nil, nil
	}
	if _, err := blob.ReadAt(head, 0); err != nil || !s3.IsList(head) {
		return nil, nil
	}
	return s3.ParseList(io.NewSectionReader(blob, 0, blob.Size()))
}

// ListChunks reads a bundle's chunks through the URLs of its presigned
// list, each with one GET and no bearer token.
func ListChunks(store Store, l *s3.List, opt httpra.Options) bundle.ChunkSource {
	opt.Token = ""
	return ChunkURLs(store, func(sum string) (string, error) {
		u, ok := l.Chunks[sum]
		if !ok {
			return "", fmt.Errorf("chunk %s: not in the presigned list (thaw presign it again)", sum)
		}
		return u, nil
	}, opt)
}

// openList opens the bundle object the presigned list l names; the
// chunks are read from its URLs.
func openList(ctx context.Context, store Store, l *s3.List, opt httpra.Options) (Blob, bundle.ChunkSource, error) {
	opt.Token = ""
	b, err := store.Open(ctx, l.Bundle, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("the presigned list's bundle %s: %w", s3.Redact(l.Bundle), err)
	}
	return b, ListChunks(store, l, opt), nil
}
