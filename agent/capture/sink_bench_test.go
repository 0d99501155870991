package capture

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkHTTPSink streams 64 MiB through the capture's raw-socket PUT
// to a server that discards it: plain http is the baseline, https the
// same socket with TLS on it (the cost of uploading a capture over https
// while frozen). Compare their MB/s.
func BenchmarkHTTPSink(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	const total = 64 << 20
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"http", false}, {"https", true}} {
		b.Run(tc.name, func(b *testing.B) {
			srv, roots := sinkServer(h, tc.tls)
			defer srv.Close()
			b.SetBytes(total)
			for b.Loop() {
				s, err := openHTTPSink(srv.URL+"/b.thaw", SinkOptions{Roots: roots, Stall: 10 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				for n := 0; n < total; n += len(buf) {
					if _, err := s.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Finish(); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
