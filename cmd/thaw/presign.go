package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const presignHelp = `
Lets a machine with no S3 credential (the restore agent) read one bundle of
a bucket, for a while: it writes a presigned list, one object holding a
presigned GET URL for the bundle object and for each chunk it names, beside
the bundle as NAME.presigned, and prints its own presigned URL as the
agent's thaw.image= (pinned to the bundle with #sha256=).

Nothing in the list is trusted: the agent checks the bundle's signature
and every chunk against the signed index. But each URL reads its object
until it expires (--expires, at most 7 days): treat the list's URL as you
would a read token. The bundle's chunks are encrypted unless it was
captured with --plaintext.

Every chunk the bundle names must be in the bucket (a bundle whose chunks
were collected is refused). SigV4 binds a presigned URL to the endpoint's
host: when the target reaches the store by another name or address, give
it with --url-endpoint.

  thaw presign --s3-endpoint https://s3.lab:7070 s3://images/web1/web1.thaw
  thaw presign --expires 2h --out web1.presigned s3://images/web1/web1.thaw
`

func runPresign(args []string) error {
	fs := newFlags("presign", "[--expires D] [--s3-endpoint URL] [--url-endpoint URL] [--ca-file FILE] [--out FILE] s3://BUCKET/PREFIX/NAME", presignHelp)
	expires := fs.Duration("expires", 24*time.Hour, "how long the URLs read their objects (at most 168h)")
	endpoint := fs.String("s3-endpoint", "", "the S3 endpoint, http(s)://HOST[:PORT] (default: AWS_ENDPOINT_URL, else AWS S3 in AWS_REGION)")
	urlEndpoint := fs.String("url-endpoint", "", "the endpoint as the restoring machine reaches it, if not --s3-endpoint: the URLs are signed for its host")
	caFile := fs.String("ca-file", "", "PEM file of the CAs that sign the store's certificate (default: the system's)")
	out := fs.String("out", "", "write the list to this file instead of beside the bundle (for a stick or a PXE tree)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !s3.IsURL(pos[0]) {
		fs.Usage()
		return &exitError{2, errors.New("give one s3://BUCKET/PREFIX/NAME")}
	}
	if *expires <= 0 || *expires > s3.MaxExpiry {
		return &exitError{2, fmt.Errorf("--expires %v: give more than 0 and at most %v", *expires, s3.MaxExpiry)}
	}
	o, err := s3.Parse(pos[0], "")
	if err != nil {
		return &exitError{2, err}
	}
	roots, err := loadRoots(*caFile)
	if err != nil {
		return err
	}
	c, err := s3Client(*endpoint, *urlEndpoint, roots)
	if err != nil {
		return err
	}
	ctx := context.Background()
	obj, size, err := c.Get(ctx, o)
	if err != nil {
		return err
	}
	defer obj.Close()
	br, err := bundle.Open(obj, size, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	defer br.Close()
	if !br.InStore() {
		return fmt.Errorf("%s is a version 1 bundle, whole in one object: presign it alone (any S3 tool), no list is needed", o)
	}
	have, err := c.Chunks(ctx, o)
	if err != nil {
		return err
	}
	l := &s3.List{Chunks: map[string]string{}}
	if l.Bundle, err = c.Presign(o, *expires); err != nil {
		return err
	}
	for _, sum := range br.ChunkSums() {
		if !have[sum] {
			return fmt.Errorf("%s names chunk %s, which is not in %s: the bundle cannot be restored (was it collected?)", o, sum, o.Sibling("chunks/"))
		}
		if l.Chunks[sum], err = c.Presign(o.Chunk(sum), *expires); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := l.Write(&buf); err != nil {
		return err
	}
	until := time.Now().Add(*expires).Local().Format(time.RFC3339)
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o600); err != nil {
			return err
		}
		fmt.Printf("wrote %s: %d chunk URLs, valid until %s\nserve it and boot the agent with thaw.image=URL-OF-IT#sha256=%s\n", *out, len(l.Chunks), until, br.Digest())
		return nil
	}
	lo := o.Sibling(pathBase(o.Key) + ".presigned")
	if err := c.Put(ctx, lo, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		return err
	}
	u, err := c.Presign(lo, *expires)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "thaw presign: %s: %d chunk URLs in %s, valid until %s\n", o, len(l.Chunks), lo, until)
	fmt.Printf("thaw.image=%s#sha256=%s\n", u, br.Digest())
	return nil
}

func pathBase(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

// s3Bundle makes an s3:// bundle readable by the restore pipeline and
// the bundle commands: a URL presigned for an hour, and chunks presigned
// as they are read. The settings come from the environment.
func s3Bundle(ref string) (string, bundle.ChunkSource, error) {
	o, err := s3.Parse(ref, "")
	if err != nil {
		return "", nil, err
	}
	c, err := s3Client("", "", nil)
	if err != nil {
		return "", nil, err
	}
	u, err := c.Presign(o, time.Hour)
	if err != nil {
		return "", nil, err
	}
	return u, s3Chunks(c, o), nil
}

// s3Chunks reads the chunks beside o, each presigned as it is read.
func s3Chunks(c *s3.Client, o s3.Object) bundle.ChunkSource {
	return restore.ChunkURLs(restore.Files{}, func(sum string) (string, error) { return c.Presign(o.Chunk(sum), time.Hour) }, httpra.Options{})
}

// s3Store opens s3:// references by presigning them as they are opened,
// other references as restore.Files does: thaw restore --follow waits for
// a bucket's pre-copy and bundle by their s3:// names.
type s3Store struct {
	restore.Files
	c *s3.Client
}

func (s s3Store) Open(ctx context.Context, ref string, opt httpra.Options) (restore.Blob, error) {
	if !s3.IsURL(ref) {
		return s.Files.Open(ctx, ref, opt)
	}
	o, err := s3.Parse(ref, "")
	if err != nil {
		return nil, err
	}
	u, err := s.c.Presign(o, time.Hour)
	if err != nil {
		return nil, err
	}
	return s.Files.Open(ctx, u, opt)
}

// s3Follow is what thaw restore --follow needs for an s3:// bundle: a
// store that presigns the pre-copy and the bundle as it waits for them,
// and its chunks presigned on demand.
func s3Follow(ref string) (restore.Store, bundle.ChunkSource, error) {
	o, err := s3.Parse(ref, "")
	if err != nil {
		return nil, nil, err
	}
	c, err := s3Client("", "", nil)
	if err != nil {
		return nil, nil, err
	}
	return s3Store{c: c}, s3Chunks(c, o), nil
}

// presignedList reads ref (a file or URL) when it holds a presigned list:
// the bundle object's URL, and its chunks read through theirs.
func presignedList(ref string) (string, bundle.ChunkSource, bool, error) {
	blob, err := restore.Files{}.Open(context.Background(), ref, httpra.Options{})
	if err != nil {
		return "", nil, false, nil // not ours to say: the caller opens it as a bundle
	}
	defer blob.Close()
	l, err := restore.ReadList(blob)
	if err != nil {
		return "", nil, false, fmt.Errorf("%s: %w", s3.Redact(ref), err)
	}
	if l == nil {
		return "", nil, false, nil
	}
	return l.Bundle, restore.ListChunks(restore.Files{}, l, httpra.Options{}), true, nil
}
