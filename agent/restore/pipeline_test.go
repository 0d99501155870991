package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
)

// TestAgentDirect: a blank disk is written in one pass (each chunk checked
// as it is written), the memory image goes to /dev/snapshot, and nothing
// of the agent runs when it freezes.
func TestAgentDirect(t *testing.T) {
	f := loadFixture(t)
	for _, tc := range []struct {
		name      string
		params    string
		hasData   bool
		wantFirst bool
		wantReads func(n int) bool
	}{
		{name: "blank disk: one pass", params: "thaw.disk=vda", wantFirst: false},
		{name: "disk with data: verified first", params: "thaw.disk=vda", hasData: true, wantFirst: true},
		{name: "disk with data, thaw.verify=stream", params: "thaw.disk=vda thaw.verify=stream", hasData: true, wantFirst: false},
		{name: "blank disk, thaw.verify=first", params: "thaw.disk=vda thaw.verify=first", wantFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, f, f.bundle)
			if tc.hasData {
				os.WriteFile(e.diskPath, []byte("an old partition table"), 0o644)
				os.Truncate(e.diskPath, diskSize)
			}
			st, err := run1(t, e, agentConfig(f, tc.params))
			if !errors.Is(err, errJumped) {
				t.Fatalf("err %v, want the jump into the image", err)
			}
			if st.Verified != tc.wantFirst {
				t.Errorf("verified first %v, want %v", st.Verified, tc.wantFirst)
			}
			got, _ := os.ReadFile(e.diskPath)
			if !bytes.Equal(got, f.disk) {
				t.Fatal("the disk differs from the source's")
			}
			if !bytes.Equal(e.snap.got, f.mem) {
				t.Fatal("/dev/snapshot did not get the memory image")
			}
			if st.Path != PathDirect || st.Replay {
				t.Errorf("path %s replay %v", st.Path, st.Replay)
			}
			if len(st.Written) != 1 || st.Written[0].ZeroChunks == 0 || st.Written[0].Zeroed != "offload" {
				t.Errorf("written %+v: want zero chunks punched, not written", st.Written)
			}
		})
	}
}

// TestRefusals: each check refuses with its own check name, before any
// disk is opened for writing, and the disk keeps its bytes.
func TestRefusals(t *testing.T) {
	f := loadFixture(t)
	_, otherPriv, _ := minisign.GenerateKey(nil)
	otherSigned := writeBundle(t, &otherPriv, f.src, map[string][]byte{"memory": f.mem, "disk0": f.disk}, nil)
	_, priv, _ := minisign.GenerateKey(nil)
	rcp, _ := age.GenerateX25519Identity()
	encrypted := writeBundle(t, &priv, f.src, map[string][]byte{"memory": f.mem, "disk0": f.disk}, []*age.X25519Recipient{rcp.Recipient()})
	noDisk := sourceManifest()
	noDisk.Disks[0].Stream = "disk9"
	noStream := writeBundle(t, &priv, noDisk, map[string][]byte{"memory": f.mem, "disk0": f.disk}, nil)

	for _, tc := range []struct {
		name  string
		b     []byte
		cfg   func(Config) Config
		env   func(*testEnv)
		check plan.Check
	}{
		{name: "params", check: plan.CheckParams, cfg: func(c Config) Config { c.Cmdline = "thaw.image=ftp://x/b"; return c }},
		{name: "pin", check: plan.CheckPin, cfg: func(c Config) Config {
			c.Cmdline = strings.Replace(c.Cmdline, "b.thaw", "b.thaw#sha256="+strings.Repeat("ab", 32), 1)
			return c
		}},
		{name: "signed by another key", b: otherSigned, check: plan.CheckSignature},
		{name: "no key", check: plan.CheckSignature, cfg: func(c Config) Config { c.Trust.Keys = nil; return c }},
		{name: "a key on the command line beside baked ones", check: plan.CheckPubkey, cfg: func(c Config) Config {
			pub, _, _ := minisign.GenerateKey(nil)
			text, _ := pub.MarshalText()
			lines := strings.Split(strings.TrimSpace(string(text)), "\n")
			c.Cmdline += " thaw.pubkey=" + lines[len(lines)-1]
			return c
		}},
		{name: "truncated", b: f.bundle[:len(f.bundle)-100], check: plan.CheckImage},
		{name: "encrypted to another", b: encrypted, check: plan.CheckIdentity, cfg: func(c Config) Config {
			c.Trust.Keys = []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}
			return c
		}},
		{name: "identity over https, another recipient's", b: encrypted, check: plan.CheckIdentity, cfg: func(c Config) Config {
			c.Trust.Keys = []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}
			c.Cmdline += " thaw.identity=https://store/other.identity"
			return c
		}, env: func(e *testEnv) { e.store.files["https://store/other.identity"] = []byte(f.id.String() + "\n") }},
		{name: "identity not there", b: encrypted, check: plan.CheckIdentity, cfg: func(c Config) Config {
			c.Trust.Keys = []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}
			c.Cmdline += " thaw.identity=https://store/missing.identity"
			return c
		}},
		{name: "identity not an identity", b: encrypted, check: plan.CheckIdentity, cfg: func(c Config) Config {
			c.Trust.Keys = []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}
			c.Cmdline += " thaw.identity=https://store/x.identity"
			return c
		}, env: func(e *testEnv) { e.store.files["https://store/x.identity"] = []byte("hello\n") }},
		{name: "identity over plain http", b: encrypted, check: plan.CheckParams, cfg: func(c Config) Config {
			c.Cmdline += " thaw.identity=http://store/r.identity"
			return c
		}},
		{name: "no disk stream", b: noStream, check: plan.CheckImage, cfg: func(c Config) Config {
			c.Trust.Keys = []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}
			return c
		}},
		{name: "cpu", check: plan.CheckCPU, env: func(e *testEnv) { e.target.CPU.Flags = []string{"fpu"} }},
		{name: "memory", check: plan.CheckMemory, env: func(e *testEnv) {
			e.target.E820 = []manifest.E820Entry{{Start: 0, End: 0x9fc00, Type: 1}, {Start: 0x100000, End: 0x4000000, Type: 1}}
			e.target.E820Digest = "0x22222222"
		}},
		{name: "disk holds data, not named", check: plan.CheckDisk, cfg: func(c Config) Config {
			c.Cmdline = strings.Replace(c.Cmdline, "thaw.disk=vda", "", 1)
			return c
		}, env: func(e *testEnv) { e.hasData["vda"] = true }},
		{name: "disk too small", check: plan.CheckDisk, env: func(e *testEnv) { e.target.Disks[0].Size = 1 << 20 }},
		{name: "no /dev/snapshot", check: plan.CheckResume, env: func(e *testEnv) { e.snap.unavailable = errors.New("no /dev/snapshot") }},
		{name: "kexec without an area", check: plan.CheckResume, cfg: func(c Config) Config {
			c.Cmdline += " thaw.resume=kexec thaw.area=vdb"
			return c
		}},
		{name: "damaged chunk, verified first", check: plan.CheckVerify, cfg: func(c Config) Config {
			c.Cmdline += " thaw.verify=first"
			return c
		}, env: func(e *testEnv) { e.store.flips[chunkAt(t, f.bundle, "memory", 2)] = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if b == nil {
				b = f.bundle
			}
			e := newEnv(t, f, b)
			before := e.diskHash(t)
			cfg := agentConfig(f, "thaw.disk=vda")
			if tc.cfg != nil {
				cfg = tc.cfg(cfg)
			}
			if tc.env != nil {
				tc.env(e)
			}
			st, err := run1(t, e, cfg)
			var r *plan.Refused
			if !errors.As(err, &r) || !r.Has(tc.check) {
				t.Fatalf("err %v, want a refusal with check %s", err, tc.check)
			}
			if len(st.Wrote) != 0 || e.diskHash(t) != before {
				t.Fatalf("a refusal wrote (%v)", st.Wrote)
			}
			if e.snap.got != nil || len(e.kx.loaded) != 0 {
				t.Fatal("a refusal reached the handover")
			}
		})
	}
}

// chunkAt is the byte, inside the stored chunk i of stream name, that a
// test damages.
func chunkAt(t *testing.T, b []byte, name string, i int) int64 {
	br, err := openUnverified(b)
	if err != nil {
		t.Fatal(err)
	}
	c := br.Index.Stream(name).Chunks[i]
	if c.Stored == 0 {
		t.Fatalf("stream %s chunk %d is not stored", name, i)
	}
	return c.At + c.Stored/2
}

// TestDamagedChunk: a chunk that fails its hash once is fetched again; one
// that always fails is refused. In one pass the disk is then partly
// written, and nothing resumable is on it.
func TestDamagedChunk(t *testing.T) {
	f := loadFixture(t)
	for _, tc := range []struct {
		name   string
		stream string
		times  int
		ok     bool
	}{
		{"disk chunk damaged once", "disk0", 1, true},
		{"memory chunk damaged twice", "memory", 2, true},
		{"disk chunk damaged always", "disk0", -1, false},
		{"memory chunk damaged always", "memory", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, f, f.bundle)
			e.store.flips[chunkAt(t, f.bundle, tc.stream, 1)] = tc.times
			st, err := run1(t, e, agentConfig(f, "thaw.disk=vda"))
			if tc.ok {
				if !errors.Is(err, errJumped) {
					t.Fatalf("err %v, want the chunk fetched again and the jump", err)
				}
				return
			}
			var r *plan.Refused
			if !errors.As(err, &r) || !r.Has(plan.CheckVerify) {
				t.Fatalf("err %v, want a verify refusal", err)
			}
			if e.snap.frozen {
				t.Fatal("the image was resumed from a damaged bundle")
			}
			if len(st.Wrote) == 0 {
				t.Fatal("one pass: the refusal should name the disks it partly wrote")
			}
		})
	}
}

// TestCutTransferResumed: the store cuts the first answers midway over
// real HTTP; the reads resume where they stopped and the restore
// completes.
func TestCutTransferResumed(t *testing.T) {
	f := loadFixture(t)
	var cuts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" && cuts.Load() < 3 && r.Method == http.MethodGet {
			cuts.Add(1)
			// Announce the whole range, send a part, hang up.
			w.Header().Set("Content-Length", "1000000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(bytes.Repeat([]byte{0}, 10))
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "b.thaw", fixedTime, bytes.NewReader(f.bundle))
	}))
	defer srv.Close()
	e := newEnv(t, f, f.bundle)
	e.Store = Files{}
	cfg := agentConfig(f, "thaw.disk=vda")
	cfg.Cmdline = strings.Replace(cfg.Cmdline, "http://store/b.thaw", srv.URL+"/b.thaw", 1)
	_, err := run1(t, e, cfg)
	if !errors.Is(err, errJumped) {
		t.Fatalf("err %v, want the restore to complete", err)
	}
	if cuts.Load() == 0 {
		t.Fatal("no transfer was cut")
	}
	got, _ := os.ReadFile(e.diskPath)
	if !bytes.Equal(got, f.disk) || !bytes.Equal(e.snap.got, f.mem) {
		t.Fatal("the restore after cut transfers differs from the source")
	}
}

// TestStage2RoundTrip: on a machine whose memory map differs, stage 1
// writes the disks and kexecs the agent with the source's e820 and its
// state; stage 2 reads the state back, writes the firmware ranges and
// restores.
func TestStage2RoundTrip(t *testing.T) {
	f := loadFixture(t)
	e := newEnv(t, f, f.bundle)
	e.target.E820 = append([]manifest.E820Entry{}, f.src.E820...)
	e.target.E820 = append(e.target.E820, manifest.E820Entry{Start: 0x100000000, End: 0x140000000, Type: 1})
	e.target.E820Digest = "0x33333333"
	st, err := run1(t, e, agentConfig(f, "thaw.disk=vda"))
	if !errors.Is(err, errExeced) {
		t.Fatalf("stage 1: %v, want the kexec into stage 2", err)
	}
	if !st.Replay || len(e.kx.loaded) != 1 || !strings.Contains(e.kx.loaded[0].Cmdline, "thaw.stage=2") || len(e.kx.e820) != len(f.src.E820) {
		t.Fatalf("stage 1 loaded %+v with e820 %v", e.kx.loaded, e.kx.e820)
	}
	if e.snap.got != nil {
		t.Fatal("stage 1 restored the image itself")
	}
	got, _ := os.ReadFile(e.diskPath)
	if !bytes.Equal(got, f.disk) {
		t.Fatal("stage 1 did not write the disk")
	}
	// Stage 2: the same machine, booted with the source's map.
	os.WriteFile(e.diskPath+".keep", got, 0o644)
	cfg := agentConfig(f, "thaw.disk=vda")
	cfg.Cmdline = e.kx.loaded[0].Cmdline
	st2, err := run1(t, e, cfg)
	if !errors.Is(err, errJumped) {
		t.Fatalf("stage 2: %v, want the jump", err)
	}
	if !equalStrings(st2.Wrote, []string{"/dev/vda"}) || st2.Path != PathDirect || st2.Times["1.write"] == 0 {
		t.Errorf("stage 2 state: wrote %v path %s times %v", st2.Wrote, st2.Path, st2.Times)
	}
	if !bytes.Equal(e.snap.got, f.mem) {
		t.Fatal("stage 2 did not hand over the memory image")
	}
	if len(e.disks.opened) != 1 {
		t.Errorf("disks opened %v: stage 2 must not open the disks again", e.disks.opened)
	}
	// A bundle that changed between the stages is refused.
	e2 := newEnv(t, f, f.bundle[:len(f.bundle):len(f.bundle)])
	e2.s2.js = bytes.Replace(e.s2.js, []byte(`"index_sha256": "`), []byte(`"index_sha256": "00`), 1)
	_, err = run1(t, e2, cfg)
	var r *plan.Refused
	if !errors.As(err, &r) || !r.Has(plan.CheckImage) {
		t.Fatalf("changed bundle in stage 2: %v", err)
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestRestoreMode: thaw restore writes files, puts the resume image into
// an area and names it; a second --disk is refused before anything is
// written.
func TestRestoreMode(t *testing.T) {
	f := loadFixture(t)
	e := newEnv(t, f, f.bundle)
	// An area without a UUID (a swap header written by hand) cannot be
	// named to the image kernel: refused before any write.
	area := filepath.Join(e.dir, "area.img")
	swap := make([]byte, 4<<20)
	copy(swap[4086:], "SWAPSPACE2")
	binary.LittleEndian.PutUint32(swap[1024:], 1)                        // version
	binary.LittleEndian.PutUint32(swap[1028:], uint32(len(swap)/4096-1)) // last_page
	os.WriteFile(area, swap, 0o644)
	cfg := Config{Mode: Restore, Disks: []string{e.diskPath}, Area: area, Trust: Trust{Keys: []NamedKey{{f.pub, "k"}}}}
	before := e.diskHash(t)
	_, err := run1(t, e, cfg)
	var r *plan.Refused
	if !errors.As(err, &r) || !r.Has(plan.CheckResume) || e.diskHash(t) != before {
		t.Fatalf("an area without a UUID: %v", err)
	}
	// mkswap's header names the area by its UUID, on any machine.
	af, _ := os.OpenFile(area, os.O_RDWR, 0)
	if err := swsusp.FormatSwap(af, 0, 1024, [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "area"); err != nil {
		t.Fatal(err)
	}
	af.Close()
	st, err := run1(t, e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "resume=UUID=deadbeef-0102-0304-0506-0708090a0b0c"; len(st.ResumeArgs) != 1 || st.ResumeArgs[0] != want {
		t.Errorf("resume args %v, want %s", st.ResumeArgs, want)
	}
	got, _ := os.ReadFile(e.diskPath)
	if !bytes.Equal(got, f.disk) {
		t.Fatal("the disk differs")
	}
	if e.snap.got != nil {
		t.Fatal("thaw restore without --direct handed over")
	}
	cfg.Disks = append(cfg.Disks, e.diskPath)
	_, err = run1(t, e, cfg)
	if !errors.As(err, &r) || !r.Has(plan.CheckDisk) {
		t.Fatalf("two --disk for one disk: %v", err)
	}
}

// memFile is an in-memory device for FormatSwap.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *memFile) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memFile) Sync() error                              { return nil }

// TestOwnSwap: a capture that reserved pages in its own swap (an LV in
// two segments of the disk) is restored onto the disk alone: the image
// goes into those pages and nowhere else, resume= names the swap, and the
// kexec path needs no area.
func TestOwnSwap(t *testing.T) {
	pub, priv, _ := minisign.GenerateKey(nil)
	segs := []manifest.Segment{{Start: 0, Length: 2 << 20, DiskOffset: 1 << 20}, {Start: 2 << 20, Length: 2 << 20, DiskOffset: 5 << 20}}
	slots := []manifest.Extent{{Start: 100, Count: 100}, {Start: 600, Count: 300}}
	// The swap in use: its header, and every other page "swapped out".
	swap := &memFile{make([]byte, 4<<20)}
	if err := swsusp.FormatSwap(swap, 0, 1024, [16]byte{9}, "swap"); err != nil {
		t.Fatal(err)
	}
	pattern := bytes.Repeat([]byte("swapped "), swsusp.PageSize/8)
	for p := 1; p < 1024; p++ {
		copy(swap.b[p*swsusp.PageSize:], pattern)
	}
	disk := make([]byte, diskSize)
	copy(disk, bytes.Repeat([]byte("lvm metadata "), 4096))
	for _, s := range segs {
		copy(disk[s.DiskOffset:s.DiskOffset+s.Length], swap.b[s.Start:s.Start+s.Length])
	}
	m := sourceManifest()
	m.Resume = &manifest.Resume{Disk: 0, Device: "/dev/mapper/vg0-swap", HeaderOffset: segs[0].DiskOffset, Segments: segs, Slots: slots}
	mem := smallStream(40)
	b := writeBundle(t, &priv, m, map[string][]byte{"memory": mem, "disk0": disk, "vmlinuz": []byte("kernel"), "initrd": []byte("initrd")}, nil)
	f := &fixture{pub: pub, src: m, disk: disk, mem: mem, bundle: b}

	check := func(t *testing.T, e *testEnv) {
		got, _ := os.ReadFile(e.diskPath)
		dev, err := blockdev.Open(e.diskPath, false)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		v, err := newSegView(dev, segs)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := swsusp.NewReader(v, v.size, 0)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := rd.Verify(); err != nil || rep.DataPages != 40 {
			t.Fatalf("the image in the swap: %v, %+v", err, rep)
		}
		reserved := map[int64]bool{0: true}
		for _, s := range slots {
			for p := s.Start; p < s.Start+s.Count; p++ {
				reserved[int64(p)] = true
			}
		}
		page := make([]byte, swsusp.PageSize)
		for p := int64(0); p < 1024; p++ {
			v.ReadAt(page, p*swsusp.PageSize)
			if !reserved[p] && !bytes.Equal(page, pattern) {
				t.Fatalf("swap page %d held a swapped-out page and was overwritten", p)
			}
		}
		for _, r := range [][2]int64{{0, 1 << 20}, {3 << 20, 5 << 20}, {7 << 20, diskSize}} {
			if !bytes.Equal(got[r[0]:r[1]], disk[r[0]:r[1]]) {
				t.Fatalf("disk bytes %d-%d outside the swap differ", r[0], r[1])
			}
		}
	}
	t.Run("too few pages reserved: refused before any write", func(t *testing.T) {
		short := sourceManifest()
		short.Resume = &manifest.Resume{Disk: 0, Device: "/dev/mapper/vg0-swap", HeaderOffset: segs[0].DiskOffset, Segments: segs, Slots: []manifest.Extent{{Start: 100, Count: 20}}}
		sb := writeBundle(t, &priv, short, map[string][]byte{"memory": mem, "disk0": disk}, nil)
		e := newEnv(t, f, sb)
		before := e.diskHash(t)
		_, err := run1(t, e, Config{Mode: Restore, Disks: []string{e.diskPath}, Trust: Trust{Keys: []NamedKey{{pub, "k"}}}})
		var r *plan.Refused
		if !errors.As(err, &r) || !r.Has(plan.CheckResume) || e.diskHash(t) != before {
			t.Fatalf("err %v: want a resume refusal with the disk untouched", err)
		}
	})
	t.Run("thaw restore onto the disk alone", func(t *testing.T) {
		e := newEnv(t, f, b)
		st, err := run1(t, e, Config{Mode: Restore, Disks: []string{e.diskPath}, Trust: Trust{Keys: []NamedKey{{pub, "k"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.ResumeArgs) != 1 || st.ResumeArgs[0] != "resume=/dev/mapper/vg0-swap" {
			t.Errorf("resume args %v", st.ResumeArgs)
		}
		check(t, e)
	})
	t.Run("a cut restore over a complete one leaves nothing resumable", func(t *testing.T) {
		e := newEnv(t, f, b)
		cfg := Config{Mode: Restore, Disks: []string{e.diskPath}, Trust: Trust{Keys: []NamedKey{{pub, "k"}}}}
		if _, err := run1(t, e, cfg); err != nil {
			t.Fatal(err)
		}
		check(t, e)
		// Again, in one pass, broken off by a chunk that never arrives
		// whole: the disk is partly written, and the old image is no
		// longer resumable either.
		e.store.flips[chunkAt(t, b, "disk0", 0)] = -1
		cfg.Verify = "stream"
		_, err := run1(t, e, cfg)
		var r *plan.Refused
		if !errors.As(err, &r) || !r.Has(plan.CheckVerify) {
			t.Fatalf("err %v, want the damaged chunk refused", err)
		}
		if h := headerAt(t, e.diskPath, segs[0].DiskOffset); h.Sig == swsusp.SigHibernate {
			t.Fatal("the previous restore's resume signature survived a cut restore")
		}
	})
	t.Run("agent kexec without thaw.area=", func(t *testing.T) {
		e := newEnv(t, f, b)
		cfg := agentConfig(f, "thaw.disk=vda thaw.resume=kexec")
		cfg.Trust.Keys = []NamedKey{{pub, "k"}}
		_, err := run1(t, e, cfg)
		if !errors.Is(err, errExeced) {
			t.Fatalf("err %v, want the kexec into the image kernel", err)
		}
		if len(e.kx.loaded) != 1 || !strings.Contains(e.kx.loaded[0].Cmdline, "resume=/dev/mapper/vg0-swap") || strings.Contains(e.kx.loaded[0].Cmdline, "resume_offset") {
			t.Fatalf("loaded %+v", e.kx.loaded)
		}
		check(t, e)
	})
	// On another memory map the image is for stage 2: stage 1 writes and
	// verifies it, then takes its signature off again, so that a power
	// cut before stage 2 leaves nothing that a kernel booted on this
	// machine's own map would resume. Stage 2 writes it back last.
	t.Run("agent kexec through stage 2", func(t *testing.T) {
		e := newEnv(t, f, b)
		e.target.E820 = append(append([]manifest.E820Entry{}, m.E820...), manifest.E820Entry{Start: 0x100000000, End: 0x140000000, Type: 1})
		e.target.E820Digest = "0x33333333"
		cfg := agentConfig(f, "thaw.disk=vda thaw.resume=kexec")
		cfg.Trust.Keys = []NamedKey{{pub, "k"}}
		st, err := run1(t, e, cfg)
		if !errors.Is(err, errExeced) || !st.Replay {
			t.Fatalf("stage 1: %v, want the kexec into stage 2", err)
		}
		header := func() swsusp.Header { return headerAt(t, e.diskPath, segs[0].DiskOffset) }
		if h := header(); h.Sig == swsusp.SigHibernate || h.Sig != h.OrigSig {
			t.Fatalf("after stage 1 the header reads %q (orig %q): want the swap signature", h.Sig, h.OrigSig)
		}
		if st.arm == nil || st.arm.Offset != segs[0].DiskOffset {
			t.Fatalf("stage 1 held back %+v, want the header at %d", st.arm, segs[0].DiskOffset)
		}
		stage2 := agentConfig(f, "thaw.disk=vda")
		stage2.Trust.Keys = cfg.Trust.Keys
		stage2.Cmdline = e.kx.loaded[0].Cmdline
		keep, _ := os.ReadFile(e.diskPath)

		// A header that changed between the stages is refused and not
		// written.
		dev, _ := blockdev.Open(e.diskPath, true)
		dev.WriteAt([]byte("x"), segs[0].DiskOffset)
		dev.Close()
		_, err = run1(t, e, stage2)
		var r *plan.Refused
		if !errors.As(err, &r) || !r.Has(plan.CheckImage) || header().Sig == swsusp.SigHibernate {
			t.Fatalf("stage 2 over a changed header: %v", err)
		}
		os.WriteFile(e.diskPath, keep, 0o644)

		e.kx.loaded = nil
		if _, err := run1(t, e, stage2); !errors.Is(err, errExeced) {
			t.Fatalf("stage 2: %v, want the kexec into the image kernel", err)
		}
		if h := header(); h.Sig != swsusp.SigHibernate {
			t.Fatalf("after stage 2 the header reads %q", h.Sig)
		}
		if len(e.kx.loaded) != 1 || !strings.Contains(e.kx.loaded[0].Cmdline, "resume=/dev/mapper/vg0-swap") {
			t.Fatalf("stage 2 loaded %+v", e.kx.loaded)
		}
		check(t, e)
	})
}

// headerAt reads the swap header page at byte off of the disk file path.
func headerAt(t *testing.T, path string, off int64) swsusp.Header {
	t.Helper()
	dev, err := blockdev.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	pg := make([]byte, swsusp.PageSize)
	if _, err := dev.ReadAt(pg, off); err != nil {
		t.Fatal(err)
	}
	return swsusp.ParseHeader(pg)
}

// TestStage2Kernel: an initramfs without the agent kernel's copy takes it
// from thaw.kernel=, checked against its digest before any write; without
// one, or with another digest, the restore is refused and nothing written.
func TestStage2Kernel(t *testing.T) {
	f := loadFixture(t)
	sum := sha256.Sum256(f.bundle) // the fake store serves the bundle's bytes for any URL
	good := "http://store/boot/vmlinuz#sha256=" + hex.EncodeToString(sum[:])
	bad := "http://store/boot/vmlinuz#sha256=" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, params string
		refused      bool
	}{
		{"none", "", true},
		{"other digest", " thaw.kernel=" + bad, true},
		{"fetched", " thaw.kernel=" + good, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, f, f.bundle)
			e.s2.noCopy = true
			e.target.E820 = append(append([]manifest.E820Entry{}, f.src.E820...), manifest.E820Entry{Start: 0x100000000, End: 0x140000000, Type: 1})
			e.target.E820Digest = "0x33333333"
			before := e.diskHash(t)
			_, err := run1(t, e, agentConfig(f, "thaw.disk=vda"+tc.params))
			if tc.refused {
				var r *plan.Refused
				if !errors.As(err, &r) || !r.Has(plan.CheckKexec) || e.diskHash(t) != before || len(e.kx.loaded) != 0 {
					t.Fatalf("err %v, disk unchanged %v, loaded %v: want a kexec refusal before any write", err, e.diskHash(t) == before, e.kx.loaded)
				}
				return
			}
			if !errors.Is(err, errExeced) || len(e.kx.loaded) != 1 || e.kx.loaded[0].Kernel != "/tmp/agent-vmlinuz" || !bytes.Equal(e.s2.kept, f.bundle) {
				t.Fatalf("err %v, loaded %+v: want stage 2 booted with the fetched kernel", err, e.kx.loaded)
			}
		})
	}
}

// TestIdentityFetched: an agent with no identity built in decrypts the
// bundle with the one thaw.identity= names, and the identity appears in
// none of its output.
func TestIdentityFetched(t *testing.T) {
	f := loadFixture(t)
	_, priv, _ := minisign.GenerateKey(nil)
	rcp, _ := age.GenerateX25519Identity()
	encrypted := writeBundle(t, &priv, f.src, map[string][]byte{"memory": f.mem, "disk0": f.disk}, []*age.X25519Recipient{rcp.Recipient()})
	e := newEnv(t, f, encrypted)
	e.store.files["https://store/keys/web1.identity"] = []byte("# created by thaw keygen\n" + rcp.String() + "\n")
	cfg := agentConfig(f, "thaw.disk=vda thaw.identity=https://store/keys/web1.identity")
	cfg.Trust = Trust{Keys: []NamedKey{{priv.Public().(minisign.PublicKey), "k"}}, Pinned: true}
	var out bytes.Buffer
	st, err := Run(context.Background(), e.Env, NewJSONReporter(&out), cfg)
	st.Close()
	if !errors.Is(err, errJumped) {
		t.Fatalf("err %v, want the jump into the image", err)
	}
	if got, _ := os.ReadFile(e.diskPath); !bytes.Equal(got, f.disk) {
		t.Fatal("the disk differs from the source's")
	}
	if !strings.Contains(out.String(), "identity from https://store/keys/web1.identity: 1 key(s)") {
		t.Errorf("the log does not say where the identity came from:\n%s", out.String())
	}
	secret := strings.TrimPrefix(rcp.String(), "AGE-SECRET-KEY-1")
	if strings.Contains(strings.ToUpper(out.String()), secret) {
		t.Fatal("the identity is in the agent's output")
	}
}

// A bundle from a chunk store (version 2): the agent opens the bundle
// object, reads each chunk from chunks/ beside it, and restores the same
// disk and memory; a chunk the store lost stops it, named.
func TestAgentFromStore(t *testing.T) {
	f := loadFixture(t)
	_, priv, _ := minisign.GenerateKey(nil)
	pub := priv.Public().(minisign.PublicKey)
	files := map[string][]byte{}
	_, object := storeObject(t, &priv, f.src, []string{"memory", "disk0"}, map[string][]byte{"memory": f.mem, "disk0": f.disk},
		bundle.WriterOptions{ChunkSize: 64 << 10, Recipients: []*age.X25519Recipient{f.id.Recipient()}, Store: &bundle.StoreOptions{}}, files)
	cfg := func() Config {
		c := agentConfig(f, "thaw.disk=vda")
		c.Trust.Keys = []NamedKey{{pub, "baked"}}
		return c
	}
	e := newEnv(t, f, object)
	e.store.files = files
	if _, err := run1(t, e, cfg()); !errors.Is(err, errJumped) {
		t.Fatalf("err %v, want the jump into the image", err)
	}
	if got, _ := os.ReadFile(e.diskPath); !bytes.Equal(got, f.disk) {
		t.Fatal("the disk differs from the source's")
	}
	if !bytes.Equal(e.snap.got, f.mem) {
		t.Fatal("/dev/snapshot did not get the memory image")
	}
	read := 0
	for _, ref := range e.store.refs {
		if strings.HasPrefix(ref, "http://store/chunks/") {
			read++
		}
	}
	if read < len(files) {
		t.Errorf("%d chunk reads for %d chunks", read, len(files))
	}

	// The store lost a chunk of the disk.
	e = newEnv(t, f, object)
	e.store.files = map[string][]byte{}
	lost := ""
	for k, v := range files {
		e.store.files[k] = v
		lost = k
	}
	delete(e.store.files, lost)
	e.store.files[strings.Replace(lost, "/chunks/", "/missing/", 1)] = nil
	_, err := run1(t, e, cfg())
	if err == nil || errors.Is(err, errJumped) || !strings.Contains(err.Error(), lost[len("http://store/"):]) {
		t.Fatalf("a lost chunk: %v", err)
	}
}
