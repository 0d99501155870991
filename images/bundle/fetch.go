package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrDamaged is a stored chunk whose bytes do not match the signed index.
var ErrDamaged = errors.New("sha256 mismatch: the bundle is damaged")

// FetchOptions bound a parallel fetch (Fetch, OpenStreamAhead).
type FetchOptions struct {
	// Workers is how many chunks are fetched, checked and decoded at
	// once; default 4 (zstd decodes about 1 GB/s a core: four keep up
	// with 10 GbE, and the memory stays what thaw restore's limit
	// assumes).
	Workers int
	// Ahead is how many chunks may be held ahead of the consumer (in
	// flight or done); default Workers+2. Memory is bounded by Workers ×
	// the stored chunk size + Ahead × the decoded one (Workers × both with
	// a Sink), whatever the bundle's size.
	Ahead int
	// Retries is how often a chunk whose bytes do not match the index is
	// fetched again before the fetch fails with ErrDamaged; default 2, -1
	// for none.
	Retries int
	// Logf, if set, is told of every refetch.
	Logf func(format string, a ...any)
	// Sink, if set, takes each stored chunk as soon as it is checked and
	// decoded, in the worker that fetched it (so several at once, in any
	// order): a writer at offsets. fn then gets every chunk with data nil,
	// in order, once Sink has taken it; a Sink error ends the fetch.
	Sink func(i int, c Chunk, data []byte) error
	// Skip, if set, leaves out the chunks for which it reports true
	// (the target already holds them): they are not fetched, and fn
	// gets them with data nil.
	Skip func(c Chunk) bool
}

func (o FetchOptions) norm() FetchOptions {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Ahead <= 0 {
		o.Ahead = o.Workers + 2
	}
	o.Ahead = max(o.Ahead, o.Workers)
	if o.Retries == 0 {
		o.Retries = 2
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

type fetched struct {
	data []byte
	err  error
}

// Fetch reads the chunks of s from first on, several at once, checks each
// against the signed index (fetching a damaged one again, Retries times),
// decrypts and decompresses it, and calls fn with each chunk in order, from
// one goroutine. data is nil for a zero chunk (nothing is stored for it);
// it is only valid until fn returns. The first error of a chunk, of fn or
// of ctx ends the fetch: no later chunk is handed to fn.
func (br *Reader) Fetch(ctx context.Context, s *Stream, first int, opt FetchOptions, fn func(i int, c Chunk, data []byte) error) error {
	opt = opt.norm()
	if first < 0 || first > len(s.Chunks) {
		return fmt.Errorf("bundle: stream %q: chunk %d of %d", s.Name, first, len(s.Chunks))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type job struct {
		i   int
		out chan fetched
	}
	jobs := make(chan job)
	order := make(chan chan fetched, opt.Ahead)
	slots := make(chan struct{}, opt.Ahead) // one per chunk not yet consumed
	var pool sync.Pool
	get := func() []byte {
		if b, ok := pool.Get().(*[]byte); ok {
			return *b
		}
		return nil
	}
	put := func(b []byte) {
		if b != nil {
			pool.Put(&b)
		}
	}

	var wg sync.WaitGroup
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var stored []byte
			for j := range jobs {
				data, err := br.fetchChunk(ctx, s, j.i, &stored, get(), opt)
				if err == nil && opt.Sink != nil {
					if err = ctx.Err(); err == nil {
						err = opt.Sink(j.i, s.Chunks[j.i], data)
					}
					put(data)
					data = nil
				}
				j.out <- fetched{data, err}
			}
		}()
	}
	// The dispatcher hands chunks out in order, never more than Ahead
	// beyond what fn has taken.
	go func() {
		defer close(order)
		defer close(jobs)
		for i := first; i < len(s.Chunks); i++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			out := make(chan fetched, 1)
			order <- out
			if s.Chunks[i].Zero || (opt.Skip != nil && opt.Skip(s.Chunks[i])) {
				out <- fetched{}
				continue
			}
			select {
			case jobs <- job{i, out}:
			case <-ctx.Done():
				out <- fetched{err: ctx.Err()}
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	i := first
	for out := range order {
		r := <-out
		if r.err == nil {
			r.err = ctx.Err()
		}
		if r.err == nil {
			r.err = fn(i, s.Chunks[i], r.data)
		}
		put(r.data)
		if r.err != nil {
			return r.err
		}
		<-slots
		i++
	}
	if i != len(s.Chunks) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("bundle: stream %q: fetch stopped at chunk %d of %d", s.Name, i, len(s.Chunks))
	}
	return nil
}

// fetchChunk reads, checks and decodes chunk i of s, reading it again when
// its bytes do not match the index.
func (br *Reader) fetchChunk(ctx context.Context, s *Stream, i int, stored *[]byte, dst []byte, opt FetchOptions) ([]byte, error) {
	c := s.Chunks[i]
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if int64(cap(*stored)) < c.Stored {
			*stored = make([]byte, c.Stored)
		}
		b := (*stored)[:c.Stored]
		if err := br.readStored(ctx, s, i, b); err != nil {
			return nil, err
		}
		out, err := br.decodeChunk(ctx, s, i, b, dst)
		if err == nil || !errors.Is(err, ErrDamaged) || try >= opt.Retries {
			if err != nil && try > 0 {
				err = fmt.Errorf("%w (read %d times)", err, try+1)
			}
			return out, err
		}
		opt.Logf("stream %s chunk %d %s does not match the signed index; fetching it again (%d of %d)", s.Name, i, br.place(c), try+1, opt.Retries)
	}
}

// AheadReader reads one stream sequentially, with the following chunks
// fetched and checked in parallel (Fetch). Close it when done.
type AheadReader struct {
	ctx    context.Context
	next   chan []byte
	taken  chan struct{}
	errc   chan error
	cur    []byte
	held   bool
	err    error
	cancel context.CancelFunc
	zero   []byte
}

// OpenStreamAhead returns a sequential reader of the stream called name
// that fetches ahead of its reads (FetchOptions bound how far).
func (br *Reader) OpenStreamAhead(ctx context.Context, name string, opt FetchOptions) (*AheadReader, error) {
	s := br.Index.Stream(name)
	if s == nil {
		return nil, fmt.Errorf("bundle: no stream %q", name)
	}
	ctx, cancel := context.WithCancel(ctx)
	ar := &AheadReader{ctx: ctx, next: make(chan []byte), taken: make(chan struct{}), errc: make(chan error, 1), cancel: cancel}
	go func() {
		ar.errc <- br.Fetch(ctx, s, 0, opt, func(_ int, c Chunk, data []byte) error {
			if data == nil {
				if int64(len(ar.zero)) < c.Len {
					ar.zero = make([]byte, c.Len)
				}
				data = ar.zero[:c.Len]
			}
			select {
			case ar.next <- data:
			case <-ctx.Done():
				return ctx.Err()
			}
			// The reader holds data until it asks for the next chunk.
			select {
			case <-ar.taken:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(ar.next)
	}()
	return ar, nil
}

func (ar *AheadReader) Read(p []byte) (int, error) {
	for len(ar.cur) == 0 {
		if ar.err != nil {
			return 0, ar.err
		}
		if ar.held {
			// The fetch waits for this, unless its context ended: then
			// the next receive below finds the stream closed.
			select {
			case ar.taken <- struct{}{}:
			case <-ar.ctx.Done():
			}
			ar.held = false
		}
		b, ok := <-ar.next
		if !ok {
			if ar.err = <-ar.errc; ar.err == nil {
				ar.err = io.EOF
			}
			return 0, ar.err
		}
		ar.cur, ar.held = b, true
	}
	n := copy(p, ar.cur)
	ar.cur = ar.cur[n:]
	return n, nil
}

// Close stops the fetch.
func (ar *AheadReader) Close() error {
	ar.cancel()
	ar.cur, ar.held = nil, false
	if ar.err == nil {
		// Drain: the fetching goroutine ends on the cancelled context.
		for range ar.next {
		}
		<-ar.errc
		ar.err = errors.New("bundle: stream reader closed")
	}
	return nil
}
