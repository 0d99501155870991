package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// openBundleURL opens a bundle served over HTTP(S) through range requests.
func openBundleURL(ref, token string, pub *minisign.PublicKey) (*bundle.Reader, func(), error) {
	ra, err := httpra.Open(context.Background(), ref, httpra.Options{Token: token,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "thaw: "+f+"\n", a...) }})
	if err != nil {
		return nil, nil, err
	}
	br, err := bundle.Open(ra, ra.Size(), pub)
	if err != nil {
		ra.Close()
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	return br, func() { br.Close(); ra.Close() }, nil
}

// openUpload streams a PUT to url; the returned function ends the body and
// waits for the server's answer.
func openUpload(ctx context.Context, url, token string) (io.Writer, func() error, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := httpra.Put(ctx, url, pr, httpra.Options{Token: token})
		pr.CloseWithError(err)
		done <- err
	}()
	return pw, func() error {
		pw.Close()
		return <-done
	}, nil
}
