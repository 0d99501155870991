package httpra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Options tunes a reader or an upload. The zero value works.
type Options struct {
	// Token is sent as Authorization: Bearer TOKEN when not empty.
	Token string
	// Client does the requests; nil means a shared client that keeps
	// connections alive and never asks for compressed answers.
	Client *http.Client
	// Retries is how many failures in a row a request survives before the
	// error is returned: 0 means 5, a negative number none.
	Retries int
	// Backoff is the wait before the first retry, doubled for each further
	// one (up to 30 s): 0 means 250 ms.
	Backoff time.Duration
	// Timeout bounds each wait on the server: for the answer's headers, and
	// for the next byte of a body (a stall). It does not bound a whole
	// transfer. 0 means 60 s.
	Timeout time.Duration
	// SkipLimit is how far into the file a read may start when the server
	// ignores Range and sends the whole file: the bytes before the offset
	// are read and thrown away. 0 means 64 MiB, a negative number no limit.
	SkipLimit int64
	// MinRate is the slowest a body may arrive, in bytes per second,
	// averaged over the time spent waiting for it, once that passes
	// RateWindow: a
	// trickle that keeps the stall timer quiet is cut and counts as a
	// failure. 0 means 16 KiB/s, a negative number no minimum.
	MinRate int64
	// RateWindow is how long an answer runs before MinRate applies: 0
	// means 30 s.
	RateWindow time.Duration
	// Deadline bounds a reader's whole life from Open: every read after it
	// fails, naming it. 0 means none.
	Deadline time.Duration
	// Logf receives one line per retry and per notable fallback; nil
	// discards them.
	Logf func(format string, args ...any)
}

// Progress is how many bytes a read must gain before its failures stop
// counting as in a row: a server that sends a few bytes and cuts uses up
// Retries all the same.
const Progress = 64 << 10

const (
	defaultRetries   = 5
	defaultBackoff   = 250 * time.Millisecond
	maxBackoff       = 30 * time.Second
	defaultTimeout   = 60 * time.Second
	defaultSkipLimit = 64 << 20
	defaultMinRate   = 16 << 10
	defaultWindow    = 30 * time.Second
)

func (o Options) norm() Options {
	switch {
	case o.Retries == 0:
		o.Retries = defaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = defaultBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	switch {
	case o.SkipLimit == 0:
		o.SkipLimit = defaultSkipLimit
	case o.SkipLimit < 0:
		o.SkipLimit = 1<<63 - 1
	}
	switch {
	case o.MinRate == 0:
		o.MinRate = defaultMinRate
	case o.MinRate < 0:
		o.MinRate = 0
	}
	if o.RateWindow <= 0 {
		o.RateWindow = defaultWindow
	}
	if o.Client == nil {
		o.Client = defaultClient
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// CloseIdleConnections closes the kept-alive connections of the shared
// client (and so their goroutines and timers), e.g. before a process
// freezes itself.
func CloseIdleConnections() { defaultClient.CloseIdleConnections() }

var defaultClient = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	t.MaxIdleConnsPerHost = 8
	return t
}()}

// backoff is the wait before retry number attempt+1.
func (o *Options) backoff(attempt int) time.Duration {
	d := o.Backoff
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// retry runs f until it succeeds, fails for good, or has failed
// o.Retries+1 times in a row.
func (o *Options) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || !retryable(err) {
			return err
		}
		if attempt >= o.Retries {
			if attempt > 0 {
				err = fmt.Errorf("%w (gave up after %d retries)", err, attempt)
			}
			return err
		}
		d := o.backoff(attempt)
		o.Logf("%s: %v; retry %d of %d in %v", what, err, attempt+1, o.Retries, d)
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stallError is the cause given to a request's context when the server
// was silent for too long.
type stallError struct{ d time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("no progress for %v (the server or the network stalled)", e.d)
}

// guard cancels a request's context when it is armed for longer than d.
type guard struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func newGuard(parent context.Context, d time.Duration) *guard {
	ctx, cancel := context.WithCancelCause(parent)
	g := &guard{ctx: ctx, cancel: cancel, d: d}
	g.timer = time.AfterFunc(time.Hour, func() { cancel(&stallError{d}) })
	g.timer.Stop()
	return g
}

func (g *guard) arm()    { g.timer.Reset(g.d) }
func (g *guard) disarm() { g.timer.Stop() }
func (g *guard) done()   { g.timer.Stop(); g.cancel(context.Canceled) }

// explain replaces a context error caused by the stall timer with the
// stall itself.
func (g *guard) explain(err error) error {
	if err == nil {
		return nil
	}
	var se *stallError
	if cause := context.Cause(g.ctx); errors.As(cause, &se) && !errors.Is(err, se) {
		return fmt.Errorf("%w (%v)", se, err)
	}
	return err
}

// guardedBody is a response body whose every Read must make progress
// within the guard's time.
type guardedBody struct {
	rc      io.ReadCloser
	g       *guard
	minRate int64
	window  time.Duration
	waited  time.Duration // inside Read
	got     int64
}

func (b *guardedBody) Read(p []byte) (int, error) {
	t0 := time.Now()
	b.g.arm()
	n, err := b.rc.Read(p)
	b.g.disarm()
	b.waited += time.Since(t0)
	if err != nil && err != io.EOF {
		err = b.g.explain(err)
	}
	b.got += int64(n)
	// The rate counts the time spent waiting on the server, not the time
	// the reader spent elsewhere with the answer open.
	if err == nil && b.minRate > 0 && b.waited > b.window && float64(b.got) < float64(b.minRate)*b.waited.Seconds() {
		return n, &SlowError{b.got, b.waited, b.minRate}
	}
	return n, err
}

func (b *guardedBody) Close() error {
	err := b.rc.Close()
	b.g.done()
	return err
}

// get sends a body-less request and returns the answer with a guarded
// body. Transport errors come back classified.
func (o *Options) get(ctx context.Context, method, rawURL string, hdr http.Header) (*http.Response, error) {
	g := newGuard(ctx, o.Timeout)
	req, err := http.NewRequestWithContext(g.ctx, method, rawURL, nil)
	if err != nil {
		g.done()
		return nil, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	o.auth(req)
	req.Header.Set("Accept-Encoding", "identity")
	g.arm()
	resp, err := o.Client.Do(req)
	g.disarm()
	if err != nil {
		g.done()
		return nil, classify(g.explain(err), rawURL)
	}
	resp.Body = &guardedBody{rc: resp.Body, g: g, minRate: o.MinRate, window: o.RateWindow}
	return resp, nil
}

// SlowError is a body that arrived more slowly than Options.MinRate.
type SlowError struct {
	Got     int64
	Took    time.Duration
	MinRate int64
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("the answer arrived at %d B/s (%d bytes in %v), below the minimum rate of %d B/s", int64(float64(e.Got)/e.Took.Seconds()), e.Got, e.Took.Round(time.Second), e.MinRate)
}

func (o *Options) auth(req *http.Request) {
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "thaw-httpra/1")
	}
}

// statusError reads the start of a non-2xx answer's body into a
// StatusError and closes the body.
func (o *Options) statusError(method, rawURL string, resp *http.Response) *StatusError {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	return &StatusError{
		Method:  method,
		URL:     rawURL,
		Code:    resp.StatusCode,
		Status:  resp.Status,
		Message: shortMessage(msg),
		NoToken: o.Token == "",
	}
}

// shortMessage makes a server's error body fit on one line.
func shortMessage(b []byte) string {
	if !utf8.Valid(b) {
		return ""
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}
