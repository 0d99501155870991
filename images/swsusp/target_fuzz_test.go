package swsusp

import (
	"bytes"
	"testing"
)

// memDev is a device in memory for NewWriter.
type memDev struct{ b []byte }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}
func (m *memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memDev) Sync() error                              { return nil }

// A target's swap area holds whatever was there: its header is parsed
// before the writer takes it, and a writer that accepts it writes an
// image that reads back.
func FuzzTargetArea(f *testing.F) {
	good := make([]byte, 64*PageSize)
	if err := FormatSwap(&memDev{good}, 0, 64, [16]byte{1}, "swap"); err != nil {
		f.Fatal(err)
	}
	f.Add(good[:PageSize])
	f.Add(make([]byte, PageSize))
	f.Fuzz(func(t *testing.T, page []byte) {
		if len(page) > PageSize {
			page = page[:PageSize]
		}
		dev := &memDev{make([]byte, 64*PageSize)}
		copy(dev.b, page)
		ParseHeader(dev.b[:PageSize])
		ParseSwapArea(dev.b[:PageSize]).UUIDString()
		w, err := NewWriter(dev, int64(len(dev.b)), 0, WriterOptions{Compression: CompressNone})
		if err != nil {
			return
		}
		if _, err := w.WriteStream(bytes.NewReader(synthStream(t, 8, 0, 1))); err != nil {
			return
		}
		if _, err := NewReader(dev, int64(len(dev.b)), 0); err != nil {
			t.Fatalf("an image written into an accepted area does not read back: %v", err)
		}
	})
}
