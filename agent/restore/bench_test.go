package restore

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/bench/synth"
)

// BenchmarkRestoreDisk is thaw restore's one pass from a local bundle
// file onto a fresh sparse file: 512 MiB of synthetic disk (bytes/s of
// disk written). scripts/bench/restorebench measures it over HTTP against
// curl and dd.
func BenchmarkRestoreDisk(b *testing.B) {
	const diskMB = 512
	dir := b.TempDir()
	pub, priv, _ := minisign.GenerateKey(nil)
	path := filepath.Join(dir, "b.thaw")
	f, _ := os.Create(path)
	bw := bufio.NewWriterSize(f, 4<<20)
	w, err := bundle.NewWriter(bw, bundle.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct {
		name, kind string
		pages      int
	}{{"memory", bundle.KindMemory, 256}, {"disk0", bundle.KindDisk, 0}} {
		sw, _ := w.Stream(s.name, s.kind)
		if s.pages > 0 {
			sw.ReadFrom(synth.MemoryStream(1, s.pages))
		} else {
			sw.ReadFrom(synth.New(2, diskMB<<20, true))
		}
		sw.Close()
	}
	m := sourceManifest()
	m.Disks[0].Size = diskMB << 20
	m.Image.Pages, m.Image.DataPages = 258, 256
	if _, err := w.Finish(m, &priv); err != nil {
		b.Fatal(err)
	}
	bw.Flush()
	f.Close()
	target, area := filepath.Join(dir, "target.img"), filepath.Join(dir, "area.img")
	af, _ := os.Create(area)
	af.Truncate(8 << 20)
	if err := swsusp.FormatSwap(af, 0, 2048, [16]byte{1}, "area"); err != nil {
		b.Fatal(err)
	}
	af.Close()
	b.SetBytes(diskMB << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.Remove(target)
		os.WriteFile(target, nil, 0o644)
		os.Truncate(target, diskMB<<20)
		st, err := Run(context.Background(), System(nil), Discard, Config{Mode: Restore, Image: path, Disks: []string{target}, Area: area,
			Trust: Trust{Keys: []NamedKey{{pub, "k"}}}})
		st.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
