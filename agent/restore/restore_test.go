package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/coldplug"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/kexec"
	"github.com/thawlinux/thaw/netfetch/dhcp"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/scripts/harness"
)

// The fakes: every system call of the pipeline, recorded.

var (
	errJumped = errors.New("fake snapshot: jumped into the image")
	errExeced = errors.New("fake kexec: booted")
)

type fakeDrivers struct{ released []string }

func (f *fakeDrivers) Coldplug(func(string, ...any)) (*coldplug.Result, error) {
	return &coldplug.Result{Loaded: []string{"virtio_blk"}}, nil
}

func (f *fakeDrivers) Release(addr string) (string, error) {
	f.released = append(f.released, addr)
	return "virtio-pci", nil
}

type fakeNet struct{}

func (fakeNet) DHCP(context.Context, string, func(string, ...any)) (*dhcp.Lease, error) {
	return &dhcp.Lease{Iface: "eth0"}, nil
}

// memStore serves one bundle from memory; flips[off] is how many reads
// covering byte off see it flipped (-1: every read).
type memStore struct {
	b     []byte
	mu    sync.Mutex
	flips map[int64]int
	reads int
	refs  []string          // every ref opened
	files map[string][]byte // other files by ref, such as an identity
}

type memBlob struct{ s *memStore }

func (s *memStore) Open(_ context.Context, ref string, _ httpra.Options) (Blob, error) {
	s.mu.Lock()
	s.refs = append(s.refs, ref)
	s.mu.Unlock()
	if strings.Contains(ref, "missing") {
		return nil, &httpra.StatusError{Code: 404}
	}
	if b, ok := s.files[ref]; ok {
		return memBlob{&memStore{b: b}}, nil
	}
	return memBlob{s}, nil
}

func (b memBlob) Size() int64  { return int64(len(b.s.b)) }
func (b memBlob) Close() error { return nil }
func (b memBlob) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b.s.b)) {
		return 0, io.EOF
	}
	n := copy(p, b.s.b[off:])
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.s.reads++
	for at, left := range b.s.flips {
		if left != 0 && at >= off && at < off+int64(n) {
			p[at-off] ^= 0x55
			if left > 0 {
				b.s.flips[at] = left - 1
			}
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type fakeMachine struct {
	m    *manifest.Manifest
	data map[string]bool
}

func (f fakeMachine) Probe() (*manifest.Manifest, error) { return f.m, nil }
func (f fakeMachine) HasData(name string) bool           { return f.data[name] }

// fakeDisks maps /dev/NAME to files in dir.
type fakeDisks struct {
	dir    string
	opened []string
}

func (f *fakeDisks) Open(ref string) (*blockdev.Dev, error) {
	f.opened = append(f.opened, ref)
	if strings.HasPrefix(ref, "/dev/") {
		ref = filepath.Join(f.dir, strings.TrimPrefix(ref, "/dev/"))
	}
	return blockdev.Open(ref, true)
}

type fakeSnapshot struct {
	unavailable error
	got         []byte
	frozen      bool
}

func (f *fakeSnapshot) Available() error { return f.unavailable }
func (f *fakeSnapshot) Restore(image io.Reader, _ bool, _ func(string, ...any), before func()) error {
	b, err := io.ReadAll(image)
	if err != nil {
		return err
	}
	f.got = b
	before()
	f.frozen = true
	return errJumped
}

type fakeKexec struct {
	loaded []kexec.Image
	e820   []manifest.E820Entry
}

func (f *fakeKexec) Load(img kexec.Image) error {
	f.loaded = append(f.loaded, img)
	return nil
}

func (f *fakeKexec) LoadWithE820(img kexec.Image, e820 []manifest.E820Entry, _ func(string, ...any)) error {
	f.loaded, f.e820 = append(f.loaded, img), e820
	return nil
}

func (f *fakeKexec) Exec() error { return errExeced }

type fakeFirmware map[uint64][]byte

func (f fakeFirmware) Read(addr, size uint64) ([]byte, error) { return make([]byte, size), nil }
func (f fakeFirmware) Write(addr uint64, b []byte) error {
	f[addr] = bytes.Clone(b)
	return nil
}

// fakeStage2 carries the state as JSON, as the real initramfs does. With
// noCopy the initramfs has no agent kernel, and a fetched one is kept.
type fakeStage2 struct {
	js      []byte
	noCopy  bool
	kept    []byte
	dropped bool
}

func (f *fakeStage2) Kernel() string {
	if f.noCopy {
		return ""
	}
	return "/boot/vmlinuz"
}

func (f *fakeStage2) KeepKernel(r io.Reader) (string, error) {
	var err error
	f.kept, err = io.ReadAll(r)
	return "/tmp/agent-vmlinuz", err
}

func (f *fakeStage2) DropKernel(string) { f.dropped = true }

func (f *fakeStage2) Pack(st *stage2.State) (string, error) {
	var err error
	f.js, err = stage2.Marshal(st)
	return "/nonexistent/stage2.cpio", err
}

func (f *fakeStage2) Load() (*stage2.State, error) {
	if f.js == nil {
		return nil, errors.New("no stage 2 state")
	}
	return stage2.Parse(f.js)
}

// The fixture: a source server and its bundle.

const diskSize = 8 << 20

// smallStream is a snapshot stream of n data pages.
func smallStream(n int) []byte { return harness.SnapshotStream(n) }

type fixture struct {
	pub, other minisign.PublicKey
	src        *manifest.Manifest
	disk, mem  []byte
	bundle     []byte
	id         *age.X25519Identity
}

var (
	fixOnce sync.Once
	fix     fixture
)

func sourceManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Version: manifest.Version, Kind: "capture", Hostname: "web1",
		Kernel:     manifest.Kernel{Release: "6.12.0-test", Cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/mapper/vg-root resume=/dev/vda2 console=ttyS0"},
		E820:       []manifest.E820Entry{{Start: 0, End: 0x9fc00, Type: 1}, {Start: 0x100000, End: 0x8000000, Type: 1}},
		E820Digest: "0x11111111",
		CPU:        manifest.CPU{Vendor: "GenuineIntel", Count: 1, Flags: []string{"fpu", "sse2"}},
		Disks:      []manifest.Disk{{Name: "vda", Size: diskSize, Stream: "disk0"}},
		Image:      &manifest.Image{Release: "6.12.0-test", Pages: 42, DataPages: 40, Stream: "memory"},
	}
}

func loadFixture(t *testing.T) *fixture {
	fixOnce.Do(func() {
		pub, priv, _ := minisign.GenerateKey(nil)
		other, _, _ := minisign.GenerateKey(nil)
		fix.pub, fix.other = pub, other
		fix.src = sourceManifest()
		fix.mem = smallStream(40)
		fix.disk = make([]byte, diskSize)
		for i := 0; i < diskSize; i += 3 << 16 { // data, with zero runs between
			copy(fix.disk[i:], bytes.Repeat([]byte("root filesystem "+strconv.Itoa(i)), 4096))
		}
		id, _ := age.GenerateX25519Identity()
		fix.id = id
		fix.bundle = writeBundle(t, &priv, fix.src, map[string][]byte{"memory": fix.mem, "disk0": fix.disk}, nil)
	})
	return &fix
}

func writeBundle(t *testing.T, key *minisign.PrivateKey, m *manifest.Manifest, streams map[string][]byte, rcp []*age.X25519Recipient) []byte {
	var out bytes.Buffer
	w, err := bundle.NewWriter(&out, bundle.WriterOptions{ChunkSize: 64 << 10, Recipients: rcp})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"memory", "disk0", "vmlinuz", "initrd", "modules"} {
		b, ok := streams[name]
		if !ok {
			continue
		}
		kind := map[string]string{"memory": bundle.KindMemory, "disk0": bundle.KindDisk}[name]
		if kind == "" {
			kind = bundle.KindFile
		}
		sw, err := w.Stream(name, kind)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.ReadFrom(bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(m, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// testEnv is one machine: its fakes, and its disk vda as a file.
type testEnv struct {
	Env
	dir      string
	store    *memStore
	snap     *fakeSnapshot
	kx       *fakeKexec
	s2       *fakeStage2
	drivers  *fakeDrivers
	disks    *fakeDisks
	target   *manifest.Manifest
	hasData  map[string]bool
	diskPath string
}

func newEnv(t *testing.T, f *fixture, b []byte) *testEnv {
	dir := t.TempDir()
	target := sourceManifest()
	target.Kind, target.Image = "probe", nil
	e := &testEnv{dir: dir, store: &memStore{b: b, flips: map[int64]int{}, files: map[string][]byte{}}, snap: &fakeSnapshot{}, kx: &fakeKexec{}, s2: &fakeStage2{},
		drivers: &fakeDrivers{}, disks: &fakeDisks{dir: dir}, target: target, hasData: map[string]bool{}, diskPath: filepath.Join(dir, "vda")}
	if err := os.WriteFile(e.diskPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(e.diskPath, diskSize); err != nil {
		t.Fatal(err)
	}
	e.Env = Env{Drivers: e.drivers, Net: fakeNet{}, Store: e.store, Machine: fakeMachine{target, e.hasData}, Disks: e.disks,
		Snapshot: e.snap, Kexec: e.kx, Firmware: fakeFirmware{}, Stage2: e.s2}
	return e
}

func (e *testEnv) diskHash(t *testing.T) [32]byte {
	b, err := os.ReadFile(e.diskPath)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func agentConfig(f *fixture, params string) Config {
	return Config{Mode: Agent, Cmdline: "console=ttyS0 thaw.image=http://store/b.thaw " + params,
		Trust: Trust{Keys: []NamedKey{{f.pub, "baked"}}, Pinned: true, Identities: []age.Identity{f.id}}}
}

func run1(t *testing.T, e *testEnv, cfg Config) (*State, error) {
	t.Helper()
	if cfg.Image == "" && cfg.Mode != Agent {
		cfg.Image = "http://store/b.thaw"
	}
	st, err := Run(context.Background(), e.Env, Discard, cfg)
	st.Close()
	return st, err
}

var fixedTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func openUnverified(b []byte) (*bundle.Reader, error) {
	return bundle.Open(bytes.NewReader(b), int64(len(b)), nil)
}
