package httpra

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// GetFull reads an object whole; a cut answer is fetched again, a wrong
// length or a missing object is not.
func TestGetFull(t *testing.T) {
	body := bytes.Repeat([]byte("chunk"), 20000)
	var cuts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Length", "100000")
			w.Write(body)
		case "/chunked":
			w.Write(body)
		case "/cut-once":
			if cuts.Add(1) == 1 {
				w.Header().Set("Content-Length", "100000")
				w.Write(body[:1000])
				panic(http.ErrAbortHandler)
			}
			w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	opt := Options{Token: "tok", Backoff: time.Millisecond}
	ctx := context.Background()
	for _, tc := range []struct {
		path string
		n    int
		want string
	}{
		{"/ok", len(body), ""},
		{"/cut-once", len(body), ""},
		{"/ok", len(body) - 1, "want 99999"},
		{"/ok", len(body) + 1, "want 100001"},
		{"/chunked", len(body) - 1, "longer than 99999"},
		{"/missing", 10, "404"},
	} {
		p := make([]byte, tc.n)
		err := GetFull(ctx, srv.URL+tc.path, p, opt)
		switch {
		case tc.want == "" && (err != nil || !bytes.Equal(p, body)):
			t.Errorf("%s: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s into %d bytes: %v, want %q", tc.path, tc.n, err, tc.want)
		}
	}
	if cuts.Load() != 2 {
		t.Errorf("the cut answer was asked for %d times, want 2", cuts.Load())
	}
	// The deadline names itself.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) }))
	defer slow.Close()
	err := GetFull(ctx, slow.URL, make([]byte, 5), Options{Deadline: 50 * time.Millisecond, Retries: -1})
	var de *DeadlineError
	if !errors.As(err, &de) {
		t.Errorf("past the deadline: %v", err)
	}
}
