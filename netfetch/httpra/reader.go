package httpra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	minWindow   = 256 << 10 // first request of a run
	maxWindow   = 64 << 20  // largest request of a sequential run
	maxIdle     = 4         // answers kept open between ReadAt calls
	drainLimit  = 256 << 10 // bytes read off to keep a connection when dropping an answer
	skipForward = 1 << 20   // gap read through on an open answer rather than asking anew
)

// ReaderAt reads one file on an HTTP server by Range requests. Its methods
// may be called from several goroutines at once.
type ReaderAt struct {
	url     string
	opt     Options
	ctx     context.Context
	cancel  context.CancelFunc
	size    int64
	etag    string
	lastMod string

	stopDeadline context.CancelFunc

	mu      sync.Mutex
	idle    []*stream // oldest first
	closed  bool
	noRange bool // the server answered a range request with 200
}

// stream is one answer being read: its body delivers bytes [pos, end) of
// the file. A stream without a body is dormant: it remembers where a
// sequential run stopped and how big its last window was.
type stream struct {
	pos, end int64
	window   int64
	body     io.ReadCloser
}

// Open learns the size and validator of the file at rawURL and returns a
// reader for it. ctx bounds the reader's whole life: cancelling it stops
// every read in flight and every later one.
func Open(ctx context.Context, rawURL string, opt Options) (*ReaderAt, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bundle URL %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bundle URL %q: want http:// or https://", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bundle URL %q: no host", rawURL)
	}
	r := &ReaderAt{url: rawURL, opt: opt.norm()}
	if r.opt.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, time.Now().Add(r.opt.Deadline), &DeadlineError{r.opt.Deadline})
		r.stopDeadline = cancel
	}
	if err := r.opt.retry(ctx, "HEAD "+shown(rawURL), func() error { return r.probe(ctx) }); err != nil {
		if r.stopDeadline != nil {
			r.stopDeadline()
		}
		if c := context.Cause(ctx); c != nil {
			var de *DeadlineError
			if errors.As(c, &de) {
				return nil, fmt.Errorf("%s: %w", rawURL, de)
			}
		}
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r, nil
}

// Size is the file's size in bytes.
func (r *ReaderAt) Size() int64 { return r.size }

// ETag is the file's entity tag as the server gave it, quotes included, or
// "" when the server sends none.
func (r *ReaderAt) ETag() string { return r.etag }

// URL is the file's address.
func (r *ReaderAt) URL() string { return r.url }

// Close drops the open answers and makes every read in flight and every
// later one fail with ErrClosed.
func (r *ReaderAt) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	idle := r.idle
	r.idle = nil
	r.mu.Unlock()
	r.cancel()
	if r.stopDeadline != nil {
		r.stopDeadline()
	}
	for _, s := range idle {
		s.drop(false)
	}
	return nil
}

// probe fills in size, etag and lastMod with a HEAD, or a one-byte GET when
// HEAD is refused or says nothing of the size.
func (r *ReaderAt) probe(ctx context.Context) error {
	resp, err := r.opt.get(ctx, http.MethodHead, r.url, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 && !encoded(resp) {
		r.size = resp.ContentLength
		r.setValidators(resp)
		return nil
	}
	if se := r.opt.statusError(http.MethodHead, r.url, resp); resp.StatusCode != http.StatusOK && retryable(se) {
		return se
	}
	// HEAD was refused (or signed for GET only), said nothing of the size,
	// or failed with an answer whose body would say why: ask with GET.
	return r.probeGet(ctx)
}

func (r *ReaderAt) probeGet(ctx context.Context) error {
	resp, err := r.opt.get(ctx, http.MethodGet, r.url, http.Header{"Range": {"bytes=0-0"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return &protocolError{r.url, err.Error()}
		}
		if cr.total < 0 {
			return &protocolError{r.url, "it does not say how big the file is (Content-Range " + cr.String() + ")"}
		}
		if cr.first != 0 {
			return &protocolError{r.url, fmt.Sprintf("asked for bytes 0-0, got %s", cr)}
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		r.size = cr.total
	case http.StatusOK:
		if resp.ContentLength < 0 || encoded(resp) {
			return &protocolError{r.url, "it does not say how big the file is (no Content-Length, no Range support)"}
		}
		r.size = resp.ContentLength
		r.noRange = true
		r.opt.Logf("%s ignores Range requests (answered 200 to bytes=0-0): reads will start from the beginning of the file", shown(r.url))
	case http.StatusRequestedRangeNotSatisfiable:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || !cr.unsatisfied || cr.total != 0 {
			return &protocolError{r.url, fmt.Sprintf("HTTP 416 to bytes=0-0 with Content-Range %q", resp.Header.Get("Content-Range"))}
		}
		r.size = 0
	default:
		return r.opt.statusError(http.MethodGet, r.url, resp)
	}
	r.setValidators(resp)
	return nil
}

func (r *ReaderAt) setValidators(resp *http.Response) {
	r.etag = resp.Header.Get("ETag")
	r.lastMod = resp.Header.Get("Last-Modified")
}

// encoded reports whether an answer's body is not the file's bytes as
// stored (the Content-Length would then not be the file's size).
func encoded(resp *http.Response) bool {
	ce := resp.Header.Get("Content-Encoding")
	return ce != "" && !strings.EqualFold(ce, "identity")
}

// ReadAt reads len(p) bytes at off, following io.ReaderAt: it returns
// fewer only with an error, and io.EOF when the file ends before p is full.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("reading %s: negative offset %d", r.url, off)
	}
	if off >= r.size {
		if len(p) == 0 && off == r.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	if rem := r.size - off; int64(len(want)) > rem {
		want = want[:rem]
	}
	if len(want) == 0 {
		return 0, nil
	}
	n, err := r.read(want, off)
	if err == nil && len(want) < len(p) {
		err = io.EOF
	}
	return n, err
}

func (r *ReaderAt) read(p []byte, off int64) (n int, err error) {
	s := r.acquire(off)
	defer func() { r.release(s) }()
	// Failures count in a row until the read gains Progress bytes (or
	// finishes): a trickle that cuts after a few bytes resets nothing.
	fails, since := 0, 0
	for n < len(p) {
		pos := off + int64(n)
		err := r.step(s, p[n:], pos)
		if got := int(s.pos - pos); got > 0 {
			n += got
			since += got
		}
		if since >= Progress {
			fails, since = 0, 0
		}
		if err == nil {
			continue
		}
		s.drop(false)
		if r.ctx.Err() != nil {
			return n, r.ctxError(off + int64(n))
		}
		if !retryable(err) {
			return n, r.readError(off+int64(n), err)
		}
		if fails >= r.opt.Retries {
			if fails > 0 {
				err = fmt.Errorf("%w (gave up after %d retries with less than %d KiB gained: the retry limit)", err, fails, Progress>>10)
			}
			return n, r.readError(off+int64(n), err)
		}
		d := r.opt.backoff(fails)
		fails++
		r.opt.Logf("reading %s at offset %d: %v; resuming there, retry %d of %d in %v", shown(r.url), off+int64(n), err, fails, r.opt.Retries, d)
		if sleep(r.ctx, d) != nil {
			return n, r.ctxError(off + int64(n))
		}
	}
	return n, nil
}

// ctxError is the error of a read stopped by Close, by Open's context or
// by the deadline.
func (r *ReaderAt) ctxError(pos int64) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var de *DeadlineError
	if c := context.Cause(r.ctx); errors.As(c, &de) {
		return fmt.Errorf("reading %s at offset %d: %w", r.url, pos, de)
	}
	return fmt.Errorf("reading %s at offset %d: %w", r.url, pos, r.ctx.Err())
}

// DeadlineError says that Options.Deadline passed.
type DeadlineError struct{ Deadline time.Duration }

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("the overall deadline of %v for the transfer passed", e.Deadline)
}

func (r *ReaderAt) readError(pos int64, err error) error {
	var ce *ChangedError
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("reading %s at offset %d: %w", r.url, pos, err)
}

// step reads into p from pos on, asking the server anew when s has no
// answer covering pos. It advances s.pos past what it read into p.
func (r *ReaderAt) step(s *stream, p []byte, pos int64) error {
	if s.body == nil || pos < s.pos || pos >= s.end {
		s.drop(true)
		// A new window: twice the last one of this run.
		s.window = max(min(2*s.window, maxWindow), minWindow, min(int64(len(p)), maxWindow))
		if err := r.fetch(s, pos, min(pos+s.window, r.size)); err != nil {
			return err
		}
	}
	if s.pos < pos {
		skip := pos - s.pos
		k, err := io.CopyN(io.Discard, s.body, skip)
		s.pos += k
		if err != nil {
			return r.cut(s, err)
		}
	}
	if rem := s.end - s.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	k, err := io.ReadFull(s.body, p)
	s.pos += int64(k)
	if err != nil {
		return r.cut(s, err)
	}
	return nil
}

// cut describes a body that ended or failed before its end.
func (r *ReaderAt) cut(s *stream, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("the connection closed at offset %d, before the end of the answer at %d: %w", s.pos, s.end, io.ErrUnexpectedEOF)
	}
	return err
}

// fetch asks for bytes [pos, end) and points s at the answer.
func (r *ReaderAt) fetch(s *stream, pos, end int64) error {
	r.mu.Lock()
	noRange := r.noRange
	r.mu.Unlock()
	if noRange && pos > r.opt.SkipLimit {
		return r.errNoRange(pos)
	}
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", pos, end-1)}}
	switch {
	case r.etag != "" && !strings.HasPrefix(r.etag, "W/"):
		hdr.Set("If-Match", r.etag)
		hdr.Set("If-Range", r.etag)
	case r.etag == "" && r.lastMod != "":
		hdr.Set("If-Unmodified-Since", r.lastMod)
		hdr.Set("If-Range", r.lastMod)
	}
	resp, err := r.opt.get(r.ctx, http.MethodGet, r.url, hdr)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		resp.Body.Close()
		return err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(&protocolError{r.url, err.Error()})
		}
		if cr.unsatisfied {
			return fail(&protocolError{r.url, fmt.Sprintf("HTTP 206 with Content-Range %s", cr)})
		}
		if cr.total >= 0 && cr.total != r.size {
			return fail(r.changedSize(cr.total))
		}
		if ce := r.changed(resp); ce != nil {
			return fail(ce)
		}
		if cr.first != pos || cr.last >= r.size {
			return fail(&protocolError{r.url, fmt.Sprintf("asked for bytes %d-%d, got %s", pos, end-1, cr)})
		}
		if resp.ContentLength >= 0 && resp.ContentLength != cr.last-cr.first+1 {
			return fail(&protocolError{r.url, fmt.Sprintf("Content-Range %s with Content-Length %d", cr, resp.ContentLength)})
		}
		s.body, s.pos, s.end = resp.Body, pos, cr.last+1
		return nil
	case http.StatusOK:
		if ce := r.changed(resp); ce != nil {
			return fail(ce)
		}
		if resp.ContentLength >= 0 && !encoded(resp) && resp.ContentLength != r.size {
			return fail(r.changedSize(resp.ContentLength))
		}
		if encoded(resp) {
			return fail(&protocolError{r.url, "a compressed answer (Content-Encoding " + resp.Header.Get("Content-Encoding") + ") to a range request"})
		}
		r.mu.Lock()
		first := !r.noRange
		r.noRange = true
		r.mu.Unlock()
		if first {
			r.opt.Logf("%s ignores Range requests (answered 200 to bytes=%d-%d): reading from the beginning of the file", shown(r.url), pos, end-1)
		}
		if pos > r.opt.SkipLimit {
			return fail(r.errNoRange(pos))
		}
		s.body, s.pos, s.end = resp.Body, 0, r.size
		return nil
	case http.StatusPreconditionFailed:
		ce := &ChangedError{URL: r.url, OldETag: r.etag, NewETag: resp.Header.Get("ETag"), OldSize: -1, NewSize: -1, OldMod: r.lastMod, NewMod: resp.Header.Get("Last-Modified")}
		if r.etag == "" {
			ce.OldETag, ce.NewETag = "", ""
		}
		return fail(ce)
	case http.StatusRequestedRangeNotSatisfiable:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err == nil && cr.unsatisfied && cr.total != r.size {
			return fail(r.changedSize(cr.total))
		}
		return fail(&protocolError{r.url, fmt.Sprintf("HTTP 416 to bytes=%d-%d of a %d-byte file", pos, end-1, r.size)})
	}
	return fail(r.opt.statusError(http.MethodGet, r.url, resp))
}

func (r *ReaderAt) errNoRange(pos int64) error {
	return fmt.Errorf("%w: %s always sends the whole file, and reading at offset %d would mean downloading and throwing away %d MiB first (limit %d MiB); serve bundles with thaw serve or another server that supports Range",
		ErrNoRange, r.url, pos, pos>>20, r.opt.SkipLimit>>20)
}

// changed compares an answer's validators with the ones Open saw.
func (r *ReaderAt) changed(resp *http.Response) *ChangedError {
	et, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if r.etag != "" && et != "" && !etagMatch(r.etag, et) {
		return &ChangedError{URL: r.url, OldETag: r.etag, NewETag: et, OldSize: -1, NewSize: -1}
	}
	if r.etag == "" && r.lastMod != "" && lm != "" && lm != r.lastMod {
		return &ChangedError{URL: r.url, OldMod: r.lastMod, NewMod: lm, OldSize: -1, NewSize: -1}
	}
	return nil
}

func (r *ReaderAt) changedSize(n int64) *ChangedError {
	return &ChangedError{URL: r.url, OldSize: r.size, NewSize: n}
}

// etagMatch is the weak comparison of RFC 9110 section 8.8.3.2.
func etagMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// acquire takes the idle answer that can serve a read at pos, or a dormant
// stream that ends there, or makes a new dormant stream.
func (r *ReaderAt) acquire(pos int64) *stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.idle) - 1; i >= 0; i-- {
		s := r.idle[i]
		live := s.body != nil && s.pos <= pos && pos-s.pos <= skipForward && pos < s.end
		if live || (s.body == nil && s.end == pos) {
			r.idle = append(r.idle[:i], r.idle[i+1:]...)
			return s
		}
	}
	return &stream{pos: pos, end: pos}
}

// release puts s back among the idle answers, dropping the oldest beyond
// maxIdle.
func (r *ReaderAt) release(s *stream) {
	if s.body != nil && s.pos >= s.end {
		s.drop(true)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		s.drop(false)
		return
	}
	r.idle = append(r.idle, s)
	var old []*stream
	if len(r.idle) > maxIdle {
		k := len(r.idle) - maxIdle
		old = append(old, r.idle[:k]...)
		r.idle = append(r.idle[:0], r.idle[k:]...)
	}
	r.mu.Unlock()
	for _, o := range old {
		o.drop(true)
	}
}

// drop closes s's answer, first reading off a small rest when keep is set
// so that the connection can serve another request.
func (s *stream) drop(keep bool) {
	if s.body == nil {
		return
	}
	if keep && s.end-s.pos <= drainLimit {
		io.Copy(io.Discard, io.LimitReader(s.body, s.end-s.pos+1))
	}
	s.body.Close()
	s.body = nil
	s.end = s.pos
}
