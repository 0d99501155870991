package harness

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// Modules adds the named modules with their dependencies first,
// decompressed, skips built-in ones and lists the load order in
// /modules.order. (The archive itself is tested in boot/initramfs.)
func TestInitramfsModules(t *testing.T) {
	dir := t.TempDir()
	var packed bytes.Buffer
	zw, err := xz.NewWriter(&packed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write([]byte("virtio_blk module")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"modules.dep": []byte("kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/drivers/virtio/virtio_ring.ko:\nkernel/lib/lz4/lz4_compress.ko:\n"),
		"modules.builtin":                       []byte("kernel/drivers/virtio/virtio_pci.ko\n"),
		"kernel/drivers/block/virtio_blk.ko.xz": packed.Bytes(),
		"kernel/drivers/virtio/virtio_ring.ko":  []byte("virtio_ring module"),
		"kernel/lib/lz4/lz4_compress.ko":        []byte("lz4 module"),
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := &Kernel{Name: "test", Release: "6.12.0-test", Modules: dir}

	tests := []struct {
		name    string
		modules []string
		want    []string // the archive's files
		err     string
	}{
		{
			name:    "dependencies first, built-in skipped",
			modules: []string{"virtio_pci", "virtio-blk"},
			want:    []string{"lib/modules/kernel/drivers/block/virtio_blk.ko", "lib/modules/kernel/drivers/virtio/virtio_ring.ko", "modules.order"},
		},
		{name: "unknown module", modules: []string{"e1000"}, err: "kernel 6.12.0-test has no module e1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewInitramfs()
			err := r.Modules(k, tt.modules...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Modules: %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Modules: %v", err)
			}
			if got := r.Names(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("files %q, want %q", got, tt.want)
			}
			raw := r.Raw()
			for _, s := range []string{"virtio_blk module", "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/block/virtio_blk.ko\n"} {
				if !bytes.Contains(raw, []byte(s)) {
					t.Errorf("archive lacks %q", s)
				}
			}
		})
	}
}
