package store

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
)

// pack writes a version 2 bundle of a memory and a disk stream as a pack,
// leaving out the chunks have names.
func pack(t *testing.T, mem, disk []byte, have map[string]bool) ([]byte, bundle.Stats) {
	t.Helper()
	var out bytes.Buffer
	w, err := bundle.NewWriter(&out, bundle.WriterOptions{ChunkSize: 1 << 20, Store: &bundle.StoreOptions{Have: func(s string) bool { return have[s] }}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name, kind string
		b          []byte
	}{{"memory", bundle.KindMemory, mem}, {"disk0", bundle.KindDisk, disk}} {
		sw, _ := w.Stream(s.name, s.kind)
		sw.Write(s.b)
		sw.Close()
	}
	if _, err := w.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "capture", Kernel: manifest.Kernel{Release: "6.12.0-test"}}, nil); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), w.Stats()
}

// verifyIn opens name in the store directory and reads every chunk.
func verifyIn(t *testing.T, dir, name string) error {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, _ := f.Stat()
	br, err := bundle.Open(f, fi.Size(), nil)
	if err != nil {
		return err
	}
	defer br.Close()
	br.SetChunkSource(bundle.DirSource(filepath.Dir(filepath.Join(dir, name))))
	return br.Verify(nil)
}

func countChunks(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(filepath.Join(dir, "chunks"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	return n
}

// A pack lands as a bundle object and its chunks; the second capture of
// the same server asks what the store has and sends only what changed.
func TestPackUpload(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	auth := []string{"Authorization", "Bearer " + token}
	ctx := context.Background()
	mem, disk := randBytes(3<<20, 1), randBytes(4<<20, 2)

	have, err := Have(ctx, http.DefaultClient, ts.url+"/fleet/db1.thaw", token)
	if err != nil || len(have) != 0 {
		t.Fatalf("an empty store has %d chunks, %v", len(have), err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, leaseName("fleet/db1.thaw"))); err != nil {
		t.Fatalf("no lease for the capture: %v", err)
	}
	p1, s1 := pack(t, mem, disk, have)
	if resp, body := put(t, ts.url+"/fleet/db1.thaw", bytes.NewReader(p1), auth...); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT pack: %s %s", resp.Status, body)
	}
	if err := verifyIn(t, ts.dir, "fleet/db1.thaw"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, leaseName("fleet/db1.thaw"))); !os.IsNotExist(err) {
		t.Errorf("the lease outlived the landing: %v", err)
	}
	if n := countChunks(t, filepath.Join(ts.dir, "fleet")); n != s1.Chunks {
		t.Errorf("%d chunk files for %d chunks", n, s1.Chunks)
	}
	assertNoTemp(t, ts.dir)

	// The same server, a little later: one block of disk changed.
	copy(disk[2<<20:], "changed")
	have, err = Have(ctx, http.DefaultClient, ts.url+"/fleet/db1.thaw", token)
	if err != nil || len(have) != s1.Chunks {
		t.Fatalf("the store lists %d chunks, holds %d: %v", len(have), s1.Chunks, err)
	}
	p2, s2 := pack(t, mem, disk, have)
	if s2.Sent != 1 || len(p2) > len(p1)/4 {
		t.Errorf("second pack: %d chunks sent, %d bytes against %d", s2.Sent, len(p2), len(p1))
	}
	if resp, body := put(t, ts.url+"/fleet/db1.thaw", bytes.NewReader(p2), auth...); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT second pack: %s %s", resp.Status, body)
	}
	if err := verifyIn(t, ts.dir, "fleet/db1.thaw"); err != nil {
		t.Fatal(err)
	}
	ts.log.waitFor(t, `pack for /fleet/db1.thaw: 1 chunks stored`)
	// Chunks are served like any file, with the read token.
	c := strings.TrimPrefix(firstChunk(t, ts.dir, "fleet/db1.thaw"), "")
	if resp, _ := do(t, "GET", ts.url+"/fleet/"+bundle.ChunkPath(c), nil); resp.StatusCode != 200 {
		t.Errorf("GET a chunk: %s", resp.Status)
	}
}

func firstChunk(t *testing.T, dir, name string) string {
	f, _ := os.Open(filepath.Join(dir, name))
	defer f.Close()
	fi, _ := f.Stat()
	br, err := bundle.Open(f, fi.Size(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range br.Index.Streams {
		for _, c := range s.Chunks {
			if !c.Zero {
				return c.SHA256
			}
		}
	}
	t.Fatal("no stored chunk")
	return ""
}

// A pack that names a chunk the store lacks, or carries a damaged one, is
// refused and leaves the previous bundle as it was; chunks/ takes no PUT;
// the list of chunks needs the write token or the bundle's one-use token.
func TestPackRefused(t *testing.T) {
	ts := newStore(t, Options{Token: token, ReadToken: "read-tok"})
	auth := []string{"Authorization", "Bearer " + token}
	mem, disk := randBytes(2<<20, 3), randBytes(1<<20, 4)
	p1, _ := pack(t, mem, disk, nil)
	if resp, body := put(t, ts.url+"/db1.thaw", bytes.NewReader(p1), auth...); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}
	before, _ := os.ReadFile(filepath.Join(ts.dir, "db1.thaw"))

	// The capture believed the store had every chunk of another server.
	other := randBytes(2<<20, 5)
	lie := map[string]bool{}
	p2, _ := pack(t, other, disk, nil)
	pr, _ := bundle.NewPackReader(bytes.NewReader(p2))
	for {
		rec, err := pr.Next()
		if err != nil {
			break
		}
		io.Copy(io.Discard, pr)
		lie[rec.SHA256] = true
	}
	p3, _ := pack(t, other, disk, lie)
	resp, body := put(t, ts.url+"/db1.thaw", bytes.NewReader(p3), auth...)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "does not hold") {
		t.Errorf("pack naming missing chunks: %s %s", resp.Status, body)
	}
	// A damaged chunk in the pack.
	bad := append([]byte{}, p1...)
	bad[bundle.PackHeaderSize+bundle.PackRecordHeaderSize+10] ^= 1
	resp, body = put(t, ts.url+"/db1.thaw", bytes.NewReader(bad), auth...)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "sha256") {
		t.Errorf("damaged pack: %s %s", resp.Status, body)
	}
	if after, _ := os.ReadFile(filepath.Join(ts.dir, "db1.thaw")); !bytes.Equal(before, after) {
		t.Error("a refused pack changed the stored bundle")
	}
	if err := verifyIn(t, ts.dir, "db1.thaw"); err != nil {
		t.Errorf("the stored bundle after refused packs: %v", err)
	}
	assertNoTemp(t, ts.dir)

	if resp, _ := put(t, ts.url+"/"+bundle.ChunkPath(strings.Repeat("ab", 32)), strings.NewReader("x"), auth...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT into chunks/: %s", resp.Status)
	}
	ctx := context.Background()
	for _, tok := range []string{"", "read-tok"} {
		if _, err := Have(ctx, http.DefaultClient, ts.url+"/db1.thaw", tok); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("chunk list with token %q: %v", tok, err)
		}
	}
	_, body = do(t, "POST", ts.url+"/grant/db2.thaw", nil, auth...)
	var g Grant
	json.Unmarshal(body, &g)
	if _, err := Have(ctx, http.DefaultClient, ts.url+"/db2.thaw", g.Token); err != nil {
		t.Errorf("chunk list with the one-use token: %v", err)
	}
	if _, err := Have(ctx, http.DefaultClient, ts.url+"/db1.thaw", g.Token); err == nil {
		t.Error("a one-use token for db2 listed chunks for db1")
	}
	p4, _ := pack(t, mem, randBytes(1<<20, 6), nil)
	if resp, body := put(t, ts.url+"/db2.thaw", bytes.NewReader(p4), "Authorization", "Bearer "+g.Token); resp.StatusCode != http.StatusCreated {
		t.Errorf("the one-use token, after listing chunks, did not upload: %s %s", resp.Status, body)
	}
}

// gc removes the chunks only a deleted bundle named; every other bundle
// still verifies. It keeps young chunks, and everything in a directory a
// capture holds a lease on; a bundle it cannot read stops its sweep.
func TestGC(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	auth := []string{"Authorization", "Bearer " + token}
	shared := randBytes(2<<20, 7)
	pa, sa := pack(t, shared, randBytes(3<<20, 8), nil)
	pb, sb := pack(t, shared, randBytes(1<<20, 9), nil)
	for name, p := range map[string][]byte{"a.thaw": pa, "b.thaw": pb} {
		if resp, body := put(t, ts.url+"/"+name, bytes.NewReader(p), auth...); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %s %s", name, resp.Status, body)
		}
	}
	total := countChunks(t, ts.dir)
	os.Remove(filepath.Join(ts.dir, "a.thaw"))
	later := time.Now().Add(time.Hour)

	rep, err := GC(ts.dir, GCOptions{Grace: 2 * time.Hour, Now: later})
	if err != nil || rep.Removed != 0 || rep.Young == 0 {
		t.Fatalf("within the grace period: %+v, %v", rep, err)
	}
	rep, err = GC(ts.dir, GCOptions{Grace: time.Minute, Now: later, DryRun: true})
	if err != nil || rep.Removed == 0 || countChunks(t, ts.dir) != total {
		t.Fatalf("dry run: %+v, %v; %d chunks of %d left", rep, err, countChunks(t, ts.dir), total)
	}
	// A capture in progress holds the directory.
	if _, err := Have(context.Background(), http.DefaultClient, ts.url+"/c.thaw", token); err != nil {
		t.Fatal(err)
	}
	rep, err = GC(ts.dir, GCOptions{Grace: time.Minute, Now: later})
	if err != nil || rep.Removed != 0 || rep.Leased == 0 || len(rep.Leases) != 1 {
		t.Fatalf("with a lease: %+v, %v", rep, err)
	}
	// The lease expires.
	rep, err = GC(ts.dir, GCOptions{Grace: time.Minute, Now: time.Now().Add(LeaseTTL + time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	want := total - sb.Chunks
	if rep.Removed != want || countChunks(t, ts.dir) != sb.Chunks {
		t.Errorf("removed %d, want %d (a: %d chunks, b: %d, %d in all); %d left", rep.Removed, want, sa.Chunks, sb.Chunks, total, countChunks(t, ts.dir))
	}
	if err := verifyIn(t, ts.dir, "b.thaw"); err != nil {
		t.Errorf("b after gc: %v", err)
	}
	// A damaged bundle object: its directory is not swept.
	os.WriteFile(filepath.Join(ts.dir, "b.thaw"), append([]byte("THAWBNDL\x02"), make([]byte, 200)...), 0o600)
	var lines []string
	rep, err = GC(ts.dir, GCOptions{Now: time.Now().Add(48 * time.Hour), Logf: func(f string, a ...any) { lines = append(lines, f) }})
	if err != nil || rep.Removed != 0 || len(lines) == 0 {
		t.Errorf("with an unreadable bundle: %+v, %v, %q", rep, err, lines)
	}
}

// A pre-copy stores the disks' chunks while the source runs, with the
// bundle's one-use token left unspent; the bundle's pack then carries only
// what changed. The pre-copy's own bundle object is stored as
// NAME.precopy until the bundle lands; a pre-copy that carries a bundle
// not marked as a pre-copy is refused.
func TestPrecopy(t *testing.T) {
	ts := newStore(t, Options{Token: token})
	ctx := context.Background()
	_, body := do(t, "POST", ts.url+"/grant/db1.thaw", nil, "Authorization", "Bearer "+token)
	var g Grant
	json.Unmarshal(body, &g)
	mem, disk := randBytes(2<<20, 11), randBytes(6<<20, 12)

	var pre bytes.Buffer
	w, _ := bundle.NewWriter(&pre, bundle.WriterOptions{ChunkSize: 1 << 20, Store: &bundle.StoreOptions{}, Precopy: true})
	sw, _ := w.Stream("disk0", bundle.KindDisk)
	sw.Write(disk)
	if _, err := w.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "capture"}, nil); err != nil {
		t.Fatal(err)
	}
	answer, err := Precopy(ctx, http.DefaultClient, ts.url+"/db1.thaw", g.Token, bytes.NewReader(pre.Bytes()))
	if err != nil || !strings.Contains(answer, "6 chunks stored") {
		t.Fatalf("pre-copy: %q %v", answer, err)
	}
	// Its bundle object, for a target that follows the capture.
	if err := verifyIn(t, ts.dir, "db1.thaw"+bundle.PrecopySuffix); err != nil {
		t.Fatalf("the pre-copy's bundle object: %v", err)
	}
	copy(disk[3<<20:], "changed while the pre-copy ran")
	have, err := Have(ctx, http.DefaultClient, ts.url+"/db1.thaw", g.Token)
	if err != nil {
		t.Fatal(err)
	}
	p, st := pack(t, mem, disk, have)
	if st.Chunks-st.Sent != 5 { // all but the changed chunk of the disk were pre-copied
		t.Errorf("after the pre-copy the pack sent %d of %d chunks: want all but the 5 unchanged ones of the disk", st.Sent, st.Chunks)
	}
	if resp, body := put(t, ts.url+"/db1.thaw", bytes.NewReader(p), "Authorization", "Bearer "+g.Token); resp.StatusCode != http.StatusCreated {
		t.Fatalf("the bundle with the one-use token after its pre-copy: %s %s", resp.Status, body)
	}
	if err := verifyIn(t, ts.dir, "db1.thaw"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "db1.thaw"+bundle.PrecopySuffix)); !os.IsNotExist(err) {
		t.Errorf("the pre-copy outlived its bundle: %v", err)
	}
	if _, err := Precopy(ctx, http.DefaultClient, ts.url+"/db2.thaw", token, bytes.NewReader(p)); err == nil || !strings.Contains(err.Error(), "must be marked") {
		t.Errorf("a pre-copy with a bundle not marked as one: %v", err)
	}
	for _, n := range []string{"db2.thaw", "db2.thaw" + bundle.PrecopySuffix} {
		if _, err := os.Stat(filepath.Join(ts.dir, n)); !os.IsNotExist(err) {
			t.Errorf("a refused pre-copy stored %s", n)
		}
	}
	if _, err := Precopy(ctx, http.DefaultClient, ts.url+"/db3.thaw", "", bytes.NewReader(pre.Bytes())); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a pre-copy without a token: %v", err)
	}
}
