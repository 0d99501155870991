package stage2

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

func TestPack(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/thaw"), 0o755)
	os.WriteFile(filepath.Join(root, "bin/thaw"), []byte("binary"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/thaw/stage2.json"), []byte("old"), 0o644)
	os.Symlink("thaw", filepath.Join(root, "bin/init"))
	os.MkdirAll(filepath.Join(root, "proc/1"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/1/status"), []byte("x"), 0o644)
	var buf bytes.Buffer
	if err := Pack(&buf, root, map[string][]byte{StatePath: []byte(`{"image":"http://x"}`)}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	rr := cpio.Newc.Reader(bytes.NewReader(buf.Bytes()))
	err := cpio.ForEachRecord(rr, func(r cpio.Record) error {
		var b []byte
		if r.ReaderAt != nil {
			b, _ = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		}
		got[r.Name] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"bin/thaw": "binary", "bin/init": "thaw", "etc/thaw/stage2.json": `{"image":"http://x"}`} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q (archive: %v)", name, got[name], want, got)
		}
	}
	if _, ok := got["proc"]; !ok {
		t.Error("proc: the mount point is missing")
	}
	if _, ok := got["proc/1/status"]; ok {
		t.Error("proc/1/status: a skipped directory's contents were packed")
	}
	// The extra file replaces the tree's copy: exactly one record.
	n := bytes.Count(buf.Bytes(), []byte("etc/thaw/stage2.json\x00"))
	if n != 1 {
		t.Errorf("stage2.json appears %d times, want 1", n)
	}
}

// The state crosses a kexec in the second stage's initramfs: whatever
// bytes it holds, Parse answers without panicking, and what it accepts
// encodes again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"image":"http://h/a.thaw","index_sha256":"00","disks":["/dev/vda"],"resume":"/tmp/x"}`))
	f.Add([]byte(`{"stage1":{"dhcp":1.5},"payload":"AAEC"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("a parsed state does not encode: %v", err)
		}
	})
}
