package capture

import (
	"os"
	"path/filepath"
	"testing"
)

// The audit: a failed capture to a file truncated the previous bundle in
// place. The bundle is written beside it and renamed over it only when
// finished, readable by its owner only.
func TestFileSinkKeepsPreviousBundle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.thaw")
	os.WriteFile(path, []byte("the previous bundle"), 0o644)

	s, err := openFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("half of a new one"))
	s.Close() // the capture failed
	if b, _ := os.ReadFile(path); string(b) != "the previous bundle" {
		t.Fatalf("after a failed capture the bundle holds %q", b)
	}
	if _, err := os.Stat(path + ".partial"); err == nil {
		t.Error("the failed capture left its partial file")
	}

	os.WriteFile(path+".partial", nil, 0o644) // left by a crash, world-readable
	s, err = openFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("a new bundle")); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "a new bundle" || st.Mode().Perm() != 0o600 {
		t.Fatalf("finished bundle %q mode %v, want the new bytes, 0600", b, st.Mode().Perm())
	}
	if _, err := os.Stat(path + ".partial"); err == nil {
		t.Error("a partial file is left after the rename")
	}
}
