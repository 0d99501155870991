package bundle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// flaky serves a bundle and flips a byte of the reads that cover byte at,
// the first `times` times (times < 0: always).
type flaky struct {
	b     []byte
	at    int64
	mu    sync.Mutex
	times int
	hits  int
}

func (f *flaky) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, f.b[min(off, int64(len(f.b))):])
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at >= off && f.at < off+int64(n) && (f.times < 0 || f.hits < f.times) {
		f.hits++
		p[f.at-off] ^= 0xff
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestFetch(t *testing.T) {
	pub, priv := testKey(t)
	ss := specs()
	b := writeBundle(t, &priv, ss)
	probe, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	mem := probe.Index.Stream("memory")
	victim := mem.Chunks[3].At + mem.Chunks[3].Stored/2

	for _, tc := range []struct {
		name    string
		times   int // damaged reads of the victim chunk
		opt     FetchOptions
		wantErr error
		reads   int
	}{
		{name: "clean", times: 0},
		{name: "damaged once, fetched again", times: 1, reads: 1},
		{name: "damaged twice, fetched again", times: 2, reads: 2},
		{name: "damaged always", times: -1, wantErr: ErrDamaged, reads: 3},
		{name: "damaged once, no retries", times: 1, opt: FetchOptions{Retries: -1}, wantErr: ErrDamaged, reads: 1},
		{name: "one worker", opt: FetchOptions{Workers: 1, Ahead: 1}},
		{name: "many workers", opt: FetchOptions{Workers: 16, Ahead: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flaky{b: b, at: victim, times: tc.times}
			br, err := Open(f, int64(len(b)), &pub)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			for _, s := range ss {
				st := br.Index.Stream(s.name)
				var got []byte
				next := 0
				err := br.Fetch(context.Background(), st, 0, tc.opt, func(i int, c Chunk, data []byte) error {
					if i != next {
						t.Fatalf("chunk %d handed out, want %d", i, next)
					}
					next++
					if data == nil {
						if !c.Zero {
							t.Fatalf("chunk %d: nil data for a stored chunk", i)
						}
						data = make([]byte, c.Len)
					}
					got = append(got, data...)
					return nil
				})
				if s.name == "memory" && tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("stream %s: err %v, want %v", s.name, err, tc.wantErr)
					}
					if next != 3 {
						t.Errorf("%d chunks handed out before the damaged one, want 3", next)
					}
					continue
				}
				if err != nil {
					t.Fatalf("stream %s: %v", s.name, err)
				}
				if !bytes.Equal(got, s.data) {
					t.Fatalf("stream %s differs", s.name)
				}
			}
			if f.hits != tc.reads {
				t.Errorf("victim damaged %d times, want %d", f.hits, tc.reads)
			}
		})
	}
}

func TestFetchStops(t *testing.T) {
	pub, priv := testKey(t)
	b := writeBundle(t, &priv, specs())
	br, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	s := br.Index.Stream("memory")
	stop := errors.New("stop")
	n := 0
	err = br.Fetch(context.Background(), s, 0, FetchOptions{}, func(i int, c Chunk, data []byte) error {
		n++
		if i == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("err %v after %d chunks, want stop after 3", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = br.Fetch(ctx, s, 0, FetchOptions{}, func(i int, c Chunk, data []byte) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("err %v after %d chunks, want context.Canceled after 1", err, n)
	}
	// From a chunk on: the rest of the stream.
	n = 0
	if err := br.Fetch(context.Background(), s, 5, FetchOptions{}, func(i int, c Chunk, data []byte) error {
		if i != 5+n {
			t.Fatalf("chunk %d, want %d", i, 5+n)
		}
		n++
		return nil
	}); err != nil || n != len(s.Chunks)-5 {
		t.Fatalf("from chunk 5: %v, %d chunks", err, n)
	}
}

func TestAheadReader(t *testing.T) {
	pub, priv := testKey(t)
	ss := specs()
	b := writeBundle(t, &priv, ss)
	br, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		ar, err := br.OpenStreamAhead(context.Background(), s.name, FetchOptions{Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(ar)
		if err != nil {
			t.Fatal(err)
		}
		ar.Close()
		if !bytes.Equal(got, s.data) {
			t.Fatalf("stream %s differs", s.name)
		}
	}
	// Closed midway: no goroutine is left blocked (the race detector and
	// the test's end would show it), and reads fail.
	ar, _ := br.OpenStreamAhead(context.Background(), "memory", FetchOptions{})
	if _, err := io.ReadFull(ar, make([]byte, 20000)); err != nil {
		t.Fatal(err)
	}
	ar.Close()
	if _, err := ar.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

// TestFetchSink: with a Sink, every stored chunk reaches it once, checked
// and decoded, from several workers; fn still sees every chunk in order.
func TestFetchSink(t *testing.T) {
	pub, priv := testKey(t)
	ss := specs()
	b := writeBundle(t, &priv, ss)
	for _, tc := range []struct {
		name  string
		times int
		ok    bool
	}{{"clean", 0, true}, {"damaged once", 1, true}, {"damaged always", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			probe, _ := Open(bytes.NewReader(b), int64(len(b)), &pub)
			c3 := probe.Index.Stream("disk0").Chunks
			var victim int64 = -1
			for _, c := range c3 {
				if !c.Zero {
					victim = c.At + c.Stored/2
				}
			}
			br, err := Open(&flaky{b: b, at: victim, times: tc.times}, int64(len(b)), &pub)
			if err != nil {
				t.Fatal(err)
			}
			s := br.Index.Stream("disk0")
			out := make([]byte, s.Size)
			var mu sync.Mutex
			sunk := map[int]int{}
			next := 0
			err = br.Fetch(context.Background(), s, 0, FetchOptions{Workers: 4, Sink: func(i int, c Chunk, data []byte) error {
				mu.Lock()
				defer mu.Unlock()
				sunk[i]++
				copy(out[c.Off:], data)
				return nil
			}}, func(i int, c Chunk, data []byte) error {
				if i != next || data != nil {
					t.Fatalf("fn got chunk %d (data %v), want %d with nil", i, data != nil, next)
				}
				mu.Lock()
				n := sunk[i]
				mu.Unlock()
				if !c.Zero && n != 1 {
					t.Fatalf("chunk %d handed to fn before the sink had it once (%d)", i, n)
				}
				next++
				return nil
			})
			if !tc.ok {
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("err %v, want ErrDamaged", err)
				}
				return
			}
			if err != nil || !bytes.Equal(out, ss[1].data) {
				t.Fatalf("err %v; the sunk stream differs: %v", err, !bytes.Equal(out, ss[1].data))
			}
		})
	}
}

// TestAheadReaderCancelled: a reader whose context ends between chunks
// returns an error; it does not wait for a fetch that stopped.
func TestAheadReaderCancelled(t *testing.T) {
	pub, priv := testKey(t)
	b := writeBundle(t, &priv, specs())
	br, _ := Open(bytes.NewReader(b), int64(len(b)), &pub)
	ctx, cancel := context.WithCancel(context.Background())
	ar, _ := br.OpenStreamAhead(ctx, "memory", FetchOptions{})
	if _, err := ar.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(ar); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled reader read to the end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled reader hung")
	}
	ar.Close()
}
