package swsusp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFormatSwapMatchesMkswap: FormatSwap writes the header util-linux's
// mkswap writes (version, size, UUID, label, signature), and ParseSwapArea
// reads mkswap's header back.
func TestFormatSwapMatchesMkswap(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "mkswap.img")
	if err := os.WriteFile(real, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mkswap", "-U", "0a0b0c0d-1111-4222-8333-444455556666", "-L", "thawtest", real).CombinedOutput()
	if err != nil {
		t.Fatalf("mkswap (util-linux) is needed: %v %s", err, out)
	}
	want, _ := os.ReadFile(real)
	f, err := os.Create(filepath.Join(dir, "ours.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(8 << 20)
	uuid := [16]byte{0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x11, 0x42, 0x22, 0x83, 0x33, 0x44, 0x44, 0x55, 0x55, 0x66, 0x66}
	if err := FormatSwap(f, 0, 2048, uuid, "thawtest"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, PageSize)
	f.ReadAt(got, 0)
	a, b := ParseSwapArea(want[:PageSize]), ParseSwapArea(got)
	if a.Version != b.Version || a.LastPage != b.LastPage || a.UUID != b.UUID || a.Label != b.Label || a.UUIDString() != "0a0b0c0d-1111-4222-8333-444455556666" {
		t.Fatalf("mkswap header %+v, ours %+v", a, b)
	}
	if !bytes.Equal(want[1024:PageSize], got[1024:PageSize]) {
		t.Fatalf("header bytes 1024..4096 differ from mkswap's")
	}
	if h := ParseHeader(want[:PageSize]); h.Sig != SigSwap2 {
		t.Fatalf("mkswap signature %q", h.Sig)
	}
}
