package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGC: thaw gc's refusals, and a store holding a chunk no bundle names
// (removed, or only counted with --dry-run); keygen --chunk-key.
func TestGC(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no store", nil, "give --store DIR"},
		{"grace", []string{"--store", dir, "--grace", "-1h"}, "--grace"},
		{"not a directory", []string{"--store", filepath.Join(dir, "nothing")}, "store directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, append([]string{"gc"}, tc.args...)...)
			if err == nil || !strings.Contains(got, tc.want) {
				t.Fatalf("err %v, want %q:\n%s", err, tc.want, got)
			}
		})
	}
	orphan := filepath.Join(dir, "chunks", "ab", strings.Repeat("ab", 32))
	os.MkdirAll(filepath.Dir(orphan), 0o700)
	os.WriteFile(orphan, []byte("a chunk no bundle names"), 0o600)
	got, err := run(t, "gc", "--store", dir, "--grace", "0s", "--dry-run")
	if err != nil || !strings.Contains(got, "would remove 1 chunks") {
		t.Fatalf("dry run: %v\n%s", err, got)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Fatal("the dry run removed the chunk")
	}
	got, err = run(t, "gc", "--store", dir, "--grace", "0s")
	if err != nil || !strings.Contains(got, "removed 1 chunks") {
		t.Fatalf("gc: %v\n%s", err, got)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatal("gc left the chunk no bundle names")
	}

	prefix := filepath.Join(dir, "fleet")
	if got, err := run(t, "keygen", "--chunk-key", "--out", prefix); err != nil {
		t.Fatalf("keygen --chunk-key: %v\n%s", err, got)
	}
	fi, err := os.Stat(prefix + ".chunkkey")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("chunk key file: %v %v", fi, err)
	}
	if got, err := run(t, "keygen", "--chunk-key", "--out", prefix); err == nil || !strings.Contains(got, "never overwritten") {
		t.Fatalf("a second keygen over the key: %v\n%s", err, got)
	}
}
