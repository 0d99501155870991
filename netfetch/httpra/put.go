package httpra

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
)

// SHA256Header is the answer header in which thaw serve reports the SHA-256
// of the body it stored; Put compares it with what it sent.
const SHA256Header = "X-Thaw-Sha256"

// Put uploads body to rawURL with a PUT, streaming it: the length is sent
// when it is known (an *os.File or a reader with a Len method, such as
// bytes.Reader), else the body goes chunked. The request asks
// Expect: 100-continue, so a server that refuses the token does so before
// the body is sent. An answer other than 2xx becomes a *StatusError
// carrying the server's message. Failures are retried only when body is an
// io.Seeker, rewound to where it stood.
func Put(ctx context.Context, rawURL string, body io.Reader, opt Options) error {
	opt = opt.norm()
	size := int64(-1)
	start := int64(-1)
	switch b := body.(type) {
	case *os.File:
		if st, err := b.Stat(); err == nil && st.Mode().IsRegular() {
			if cur, err := b.Seek(0, io.SeekCurrent); err == nil {
				size, start = st.Size()-cur, cur
			}
		}
	case interface{ Len() int }:
		size = int64(b.Len())
	}
	seeker, canRewind := body.(io.Seeker)
	if canRewind && start < 0 {
		cur, err := seeker.Seek(0, io.SeekCurrent)
		if err != nil {
			canRewind = false
		}
		start = cur
	}
	retries := opt.Retries
	if !canRewind {
		retries = 0
	}
	first := true
	o := opt
	o.Retries = retries
	return o.retry(ctx, "PUT "+shown(rawURL), func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("PUT %s: rewinding the body to retry: %w", rawURL, err)
			}
		}
		first = false
		return opt.put(ctx, rawURL, body, size)
	})
}

// putBody feeds the request from the caller's reader, hashing what it
// sends and arming the stall guard while the transport writes.
type putBody struct {
	r    io.Reader
	h    hash.Hash
	g    *guard
	sent int64
	eof  bool
	err  error
}

func (b *putBody) Read(p []byte) (int, error) {
	b.g.disarm()
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.sent += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	// From here the transport writes p, then waits for the answer.
	b.g.arm()
	return n, err
}

func (o *Options) put(ctx context.Context, rawURL string, body io.Reader, size int64) error {
	g := newGuard(ctx, o.Timeout)
	defer g.done()
	pb := &putBody{r: body, h: sha256.New(), g: g}
	req, err := http.NewRequestWithContext(g.ctx, http.MethodPut, rawURL, pb)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", rawURL, err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
		pb.eof = true
	} else {
		req.Header.Set("Expect", "100-continue")
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	o.auth(req)
	g.arm()
	resp, err := o.Client.Do(req)
	g.disarm()
	if err != nil {
		if pb.err != nil {
			return &finalError{fmt.Errorf("PUT %s: reading the upload at byte %d: %w", rawURL, pb.sent, pb.err)}
		}
		return classify(g.explain(err), rawURL)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return o.statusError(http.MethodPut, rawURL, resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if want := resp.Header.Get(SHA256Header); want != "" && pb.eof {
		if got := hex.EncodeToString(pb.h.Sum(nil)); !strings.EqualFold(got, want) {
			return &finalError{fmt.Errorf("PUT %s: the server stored a body with SHA-256 %s, but %d bytes with SHA-256 %s were sent: the upload was corrupted on the way", rawURL, want, pb.sent, got)}
		}
	}
	return nil
}

// PostLog sends one log record (a line, or several) to rawURL with a POST,
// as the restore agent reports its progress to thaw serve's /log/NAME.
// A missing final newline is added.
func PostLog(ctx context.Context, rawURL string, line []byte, opt Options) error {
	opt = opt.norm()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		line = append(line[:len(line):len(line)], '\n')
	}
	return opt.retry(ctx, "POST "+shown(rawURL), func() error {
		g := newGuard(ctx, opt.Timeout)
		defer g.done()
		req, err := http.NewRequestWithContext(g.ctx, http.MethodPost, rawURL, bytes.NewReader(line))
		if err != nil {
			return fmt.Errorf("POST %s: %w", rawURL, err)
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		opt.auth(req)
		g.arm()
		resp, err := opt.Client.Do(req)
		if err != nil {
			return classify(g.explain(err), rawURL)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return opt.statusError(http.MethodPost, rawURL, resp)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	})
}
