//go:build vm

package vmtest

import (
	"testing"

	"github.com/thawlinux/thaw/images/bundle"
)

// TestFleetSharesChunks is S2 across a fleet: the Debian 13 server (root
// on LVM), the plain Debian 13 server and the Debian 12 server are
// captured with one chunk key (the fleet's, installed on each), so that a
// store holding their bundles keeps each chunk of equal plaintext once.
// Their captures are each in a store of their own here; with one key the
// chunks' names say which are equal. The two Debian 13 servers run the
// same kernel package: every chunk of its files is shared.
func TestFleetSharesChunks(t *testing.T) {
	t.Parallel()
	trixie := needCaptured(t)
	plain := needCapturedSuite(t, "plain")
	bookworm := needCapturedSuite(t, "bookworm")
	type chunk struct {
		kind   string
		stored int64
	}
	chunks := func(c *capturedServer) map[string]chunk {
		m := map[string]chunk{}
		for _, s := range openBundleFile(t, c.bundle).Index.Streams {
			for _, ch := range s.Chunks {
				if !ch.Zero {
					m[ch.SHA256] = chunk{s.Kind, ch.Stored}
				}
			}
		}
		return m
	}
	a := chunks(trixie)
	for _, other := range []struct {
		name string
		c    *capturedServer
	}{{"plain Debian 13", plain}, {"Debian 12", bookworm}} {
		b := chunks(other.c)
		var total, shared int64
		byKind := map[string][2]int64{}
		for sum, ch := range b {
			total += ch.stored
			k := byKind[ch.kind]
			k[0] += ch.stored
			if _, ok := a[sum]; ok {
				shared += ch.stored
				k[1] += ch.stored
			}
			byKind[ch.kind] = k
		}
		for _, kind := range []string{bundle.KindMemory, bundle.KindDisk, bundle.KindFile} {
			k := byKind[kind]
			t.Logf("S2 fleet: %-16s %-6s %7.1f MiB stored, %7.1f MiB already in the Debian 13 (LVM) bundle", other.name, kind, float64(k[0])/(1<<20), float64(k[1])/(1<<20))
		}
		var first int64
		for _, ch := range a {
			first += ch.stored
		}
		t.Logf("S2 fleet: a store of the Debian 13 (LVM) and the %s bundle keeps %.1f MiB instead of %.1f MiB: %.1f MiB (%.1f%%) saved",
			other.name, float64(first+total-shared)/(1<<20), float64(first+total)/(1<<20), float64(shared)/(1<<20), 100*float64(shared)/float64(first+total))
		if other.c != plain {
			continue
		}
		for _, name := range []string{"vmlinuz", "modules"} {
			s := openBundleFile(t, other.c.bundle).Index.Stream(name)
			if s == nil {
				t.Fatalf("the plain server's bundle has no stream %s", name)
			}
			for _, ch := range s.Chunks {
				if _, ok := a[ch.SHA256]; !ch.Zero && !ok {
					t.Errorf("a chunk of %s, the same kernel package's, is not shared between the two Debian 13 servers (not one chunk key?)", name)
					break
				}
			}
		}
	}
}
