package swsusp

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriterFreePages: in a swap that is in use, the image goes only to
// the reserved pages; every other page keeps its bytes, and the image
// reads back.
func TestWriterFreePages(t *testing.T) {
	stream := synthStream(t, 1500, 6, 3)
	for _, tc := range []struct {
		name string
		free []Extent
		c    Compression
		want string // error; "" : it fits
	}{
		{"two runs, lzo", []Extent{{100, 900}, {3000, 2000}}, CompressLZO, ""},
		{"scattered, none", []Extent{{7, 3}, {50, 700}, {2000, 1000}}, CompressNone, ""},
		{"too few", []Extent{{100, 200}}, CompressLZO, "used up"},
		{"the header page", []Extent{{0, 10}}, CompressLZO, "outside the swap area"},
		{"beyond the area", []Extent{{8000, 500}}, CompressLZO, "outside the swap area"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newArea(t, 8192, 0)
			// "Swapped-out pages": every page holds a pattern.
			pattern := bytes.Repeat([]byte("in use "), PageSize/7+1)[:PageSize]
			for p := int64(1); p < 8192; p++ {
				f.WriteAt(pattern, p*PageSize)
			}
			w, err := NewWriter(f, size(t, f), 0, WriterOptions{Compression: tc.c, Free: tc.free})
			if err == nil {
				_, err = w.WriteStream(bytes.NewReader(stream))
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := NewReader(f, size(t, f), 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Verify(); err != nil {
				t.Fatal(err)
			}
			free := map[int64]bool{}
			for _, e := range tc.free {
				for p := e.Start; p < e.Start+e.Count; p++ {
					free[int64(p)] = true
				}
			}
			page := make([]byte, PageSize)
			for p := int64(1); p < 8192; p++ {
				f.ReadAt(page, p*PageSize)
				if !free[p] && !bytes.Equal(page, pattern) {
					t.Fatalf("page %d is not reserved but was written", p)
				}
			}
		})
	}
}
