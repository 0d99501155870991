package blockdev

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestZeroRange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xa5}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		off, n int64
		ok     bool
	}{
		{4096, 8192, true},
		{0, 0, true},
		{1 << 20, 1, false},
		{-1, 10, false},
	} {
		err := d.ZeroRange(tc.off, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("ZeroRange(%d, %d): %v", tc.off, tc.n, err)
		}
	}
	b, _ := os.ReadFile(p)
	if len(b) != 1<<20 {
		t.Fatalf("size %d after zeroing, want it kept", len(b))
	}
	for i, c := range b {
		want := byte(0xa5)
		if i >= 4096 && i < 4096+8192 {
			want = 0
		}
		if c != want {
			t.Fatalf("byte %d is %#x, want %#x", i, c, want)
		}
	}
}
