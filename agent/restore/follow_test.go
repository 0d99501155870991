package restore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// storeObject writes streams as a store bundle (as capture does into
// thaw serve): its bundle object, and its chunks by their URL beside
// http://store/.
func storeObject(t *testing.T, key *minisign.PrivateKey, m *manifest.Manifest, streams []string, data map[string][]byte, opt bundle.WriterOptions, chunks map[string][]byte) (*bundle.Index, []byte) {
	t.Helper()
	var pack bytes.Buffer
	w, err := bundle.NewWriter(&pack, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range streams {
		kind := bundle.KindDisk
		if name == "memory" {
			kind = bundle.KindMemory
		}
		sw, _ := w.Stream(name, kind)
		sw.Write(data[name])
		sw.Close()
	}
	ix, err := w.Finish(m, key)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := bundle.NewPackReader(&pack)
	if err != nil {
		t.Fatal(err)
	}
	var object []byte
	for {
		rec, err := pr.Next()
		if err == bundle.ErrPackEnd {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(pr)
		if rec.Kind == bundle.RecordBundle {
			object = b
		} else {
			chunks["http://store/"+bundle.ChunkPath(rec.SHA256)] = b
		}
	}
	return ix, object
}

// seqStore answers each ref in seq with its answers in turn (nil: 404),
// the last one for good; other refs from files.
type seqStore struct {
	mu    sync.Mutex
	seq   map[string][][]byte
	opens map[string]int
	files map[string][]byte
	refs  []string
	held  map[string][]byte
}

func (s *seqStore) Open(ctx context.Context, ref string, _ httpra.Options) (Blob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs = append(s.refs, ref)
	// As thaw serve: ?wait= asks for ref itself (an answer of its
	// sequence), which the open by name that follows then gets.
	base, poll := strings.CutSuffix(ref, "?wait=25")
	b, ok := s.files[base]
	if held, in := s.held[ref]; in && !poll {
		delete(s.held, ref)
		b, ok = held, true
	} else if q, in := s.seq[base]; in {
		n := s.opens[base]
		s.opens[base]++
		b, ok = q[min(n, len(q)-1)], true
		if poll && b != nil {
			s.held[base] = b
		}
	}
	if !ok || b == nil {
		return nil, &httpra.StatusError{Code: 404, Method: "GET"}
	}
	return ctxBlob{memBlob{&memStore{b: b}}, ctx}, nil
}

// ctxBlob reads as long as the context it was opened with lives, as an
// HTTP blob does.
type ctxBlob struct {
	memBlob
	ctx context.Context
}

func (b ctxBlob) ReadAt(p []byte, off int64) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.memBlob.ReadAt(p, off)
}

// TestFollow: the agent follows a capture. It waits for the pre-copy,
// writes it, waits past an older bundle of the same name for the one
// with the pre-copy's id, and writes only the chunks that changed: the
// disk ends as the bundle's, and the memory image is resumed.
func TestFollow(t *testing.T) {
	f := loadFixture(t)
	_, priv, _ := minisign.GenerateKey(nil)
	pub := priv.Public().(minisign.PublicKey)
	ck := make([]byte, bundle.ChunkKeySize)
	rand.Read(ck)
	rcp := []*age.X25519Recipient{f.id.Recipient()}
	so := func() *bundle.StoreOptions { return &bundle.StoreOptions{ChunkKey: ck} }

	// The disk as the pre-copy read it, and as the frozen capture did:
	// one region written in between.
	before := bytes.Clone(f.disk)
	after := bytes.Clone(f.disk)
	copy(after[3<<20:], bytes.Repeat([]byte("written after the pre-copy "), 4096))

	chunks := map[string][]byte{}
	pm := *f.src
	pm.Image = nil
	pre, preObj := storeObject(t, &priv, &pm, []string{"disk0"}, map[string][]byte{"disk0": before},
		bundle.WriterOptions{Recipients: rcp, Precopy: true, Store: so()}, chunks)
	if !pre.Precopy {
		t.Fatal("the pre-copy's index is not marked as one")
	}
	_, oldObj := storeObject(t, &priv, f.src, []string{"memory", "disk0"}, map[string][]byte{"memory": f.mem, "disk0": before},
		bundle.WriterOptions{Recipients: rcp, Store: so()}, chunks)
	final, finalObj := storeObject(t, &priv, f.src, []string{"memory", "disk0"}, map[string][]byte{"memory": f.mem, "disk0": after},
		bundle.WriterOptions{Recipients: rcp, ID: pre.ID, Store: so()}, chunks)

	var same, total int64
	w := map[int64]bundle.Chunk{}
	for _, c := range pre.Stream("disk0").Chunks {
		w[c.Off] = c
	}
	for _, c := range final.Stream("disk0").Chunks {
		total += c.Len
		if p, ok := w[c.Off]; ok && p.SHA256 == c.SHA256 && p.Len == c.Len && p.Zero == c.Zero {
			same += c.Len
		}
	}
	if same == 0 || same == total {
		t.Fatalf("fixture: %d of %d bytes unchanged", same, total)
	}

	cfg := func(params string) Config {
		c := agentConfig(f, "thaw.disk=vda "+params)
		c.Trust.Keys = []NamedKey{{pub, "baked"}}
		return c
	}
	newFollow := func(seq map[string][][]byte) (*testEnv, *seqStore) {
		e := newEnv(t, f, nil)
		s := &seqStore{seq: seq, opens: map[string]int{}, files: chunks, held: map[string][]byte{}}
		e.Env.Store = s
		return e, s
	}

	t.Run("follows", func(t *testing.T) {
		e, s := newFollow(map[string][][]byte{
			"http://store/b.thaw.precopy": {nil, nil, preObj},
			"http://store/b.thaw":         {oldObj, finalObj},
		})
		st, err := run1(t, e, cfg("thaw.follow=1"))
		if !errors.Is(err, errJumped) {
			t.Fatalf("err %v, want the jump into the image", err)
		}
		if got, _ := os.ReadFile(e.diskPath); !bytes.Equal(got, after) {
			t.Fatal("the disk is not the capture's")
		}
		if !bytes.Equal(e.snap.got, f.mem) {
			t.Fatal("/dev/snapshot did not get the memory image")
		}
		if len(st.Written) != 1 || st.Written[0].KeptBytes != same {
			t.Errorf("written %+v: want %d bytes kept from the pre-copy", st.Written, same)
		}
		if s.opens["http://store/b.thaw.precopy"] != 3 || s.opens["http://store/b.thaw"] < 2 {
			t.Errorf("opens %v: want the pre-copy waited for, and the older bundle passed over", s.opens)
		}
		if !slices.Contains(s.refs, "http://store/b.thaw?wait=25") {
			t.Errorf("refs %v: want the bundle waited for with thaw serve's long poll", s.refs)
		}
		if _, ok := st.Times["precopy.write"]; !ok || st.Times["follow"] == 0 {
			t.Errorf("stage times %v: want the pre-copy's write and the follow", st.Times)
		}
		// Pass 2 fetches only the chunks that changed (and the memory).
		fetched := map[string]int{}
		for _, ref := range s.refs {
			if strings.Contains(ref, "/chunks/") {
				fetched[ref]++
			}
		}
		for _, c := range final.Stream("disk0").Chunks {
			if p, ok := w[c.Off]; ok && p.SHA256 == c.SHA256 && p.Len == c.Len && !c.Zero && fetched["http://store/"+bundle.ChunkPath(c.SHA256)] > 1 {
				t.Errorf("chunk at %d, unchanged since the pre-copy, fetched %d times", c.Off, fetched["http://store/"+bundle.ChunkPath(c.SHA256)])
			}
		}
	})

	t.Run("never comes", func(t *testing.T) {
		e, _ := newFollow(map[string][][]byte{
			"http://store/b.thaw.precopy": {preObj},
			"http://store/b.thaw":         {oldObj},
		})
		_, err := run1(t, e, cfg("thaw.follow=1 thaw.deadline=2s"))
		if err == nil || errors.Is(err, errJumped) || !strings.Contains(err.Error(), "not this capture's") {
			t.Fatalf("err %v, want the wait to end at the deadline, naming the older bundle", err)
		}
		if e.snap.got != nil {
			t.Fatal("an image was resumed")
		}
	})

	for _, tc := range []struct {
		name   string
		seq    map[string][][]byte
		params string
		check  plan.Check
	}{
		{"a pre-copy restored as a bundle", map[string][][]byte{"http://store/b.thaw": {preObj}}, "", plan.CheckImage},
		{"a bundle where the pre-copy goes", map[string][][]byte{"http://store/b.thaw.precopy": {oldObj}}, "thaw.follow=1", plan.CheckImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newFollow(tc.seq)
			h := e.diskHash(t)
			_, err := run1(t, e, cfg(tc.params))
			var ref *plan.Refused
			if !errors.As(err, &ref) || !ref.Has(tc.check) {
				t.Fatalf("err %v, want a refusal of check %s", err, tc.check)
			}
			if e.diskHash(t) != h {
				t.Fatal("the disk was written")
			}
		})
	}
}
