package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/dhcp"
)

// fakeStick is a stick that mounts (or fails to) and keeps the logs
// written to it.
type fakeStick struct {
	err       error
	mounted   bool
	rescans   int
	logs      map[string][]byte
	unmounted bool
}

func (s *fakeStick) Mount(ctx context.Context, rescan func()) (string, string, error) {
	rescan()
	s.rescans++
	if s.err != nil {
		return "", "", s.err
	}
	s.mounted = true
	return "sda", "/dev/sda2", nil
}

func (s *fakeStick) WriteLog(name string, b []byte) (string, error) {
	if !s.mounted || s.unmounted {
		return "", errors.New("not mounted")
	}
	if s.logs == nil {
		s.logs = map[string][]byte{}
	}
	s.logs[name] = append([]byte(nil), b...)
	return stick.LogDir + "/" + name, nil
}

func (s *fakeStick) Unmount() { s.unmounted = true }

// countNet counts DHCP attempts.
type countNet struct{ n int }

func (c *countNet) DHCP(context.Context, string, func(string, ...any)) (*dhcp.Lease, error) {
	c.n++
	return &dhcp.Lease{Iface: "eth0"}, nil
}

func stickConfig(f *fixture, params string) Config {
	cfg := agentConfig(f, "")
	cfg.Cmdline = "console=ttyS0 thaw.image=usb:b.thaw " + params
	cfg.Transcript = func() []byte { return []byte("[ ok ] everything the console said\n") }
	return cfg
}

func TestStickImage(t *testing.T) {
	f := loadFixture(t)
	withStick := func(e *testEnv) *manifest.Disk {
		e.target.Disks = append(e.target.Disks, manifest.Disk{Name: "sda", Size: 1 << 30, Medium: stick.Medium})
		return &e.target.Disks[len(e.target.Disks)-1]
	}
	for _, tc := range []struct {
		name     string
		params   string
		stickErr error
		check    plan.Check // "" : handed over
		logs     int        // log files on the stick
	}{
		{name: "restores offline", params: "thaw.disk=vda", logs: 1},
		{name: "chooses the disk itself, never the stick", params: "", logs: 1},
		{name: "stick named as target", params: "thaw.disk=sda", check: plan.CheckMedium, logs: 1},
		{name: "no stick", params: "thaw.disk=vda", stickErr: fmt.Errorf("no partition named THAWDATA: %w", stick.ErrNotFound), check: plan.CheckImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, f, f.bundle)
			withStick(e)
			fs := &fakeStick{err: tc.stickErr}
			net := &countNet{}
			e.Stick, e.Net = fs, net
			before := e.diskHash(t)
			var events bytes.Buffer
			cfg := stickConfig(f, tc.params)
			st, err := Run(context.Background(), e.Env, NewJSONReporter(&events), cfg)
			if tc.check == "" {
				if !errors.Is(err, errJumped) {
					t.Fatalf("err %v, want the jump into the image", err)
				}
				if got, _ := os.ReadFile(e.diskPath); !bytes.Equal(got, f.disk) {
					t.Fatal("the disk differs from the source's")
				}
			} else {
				var ref *plan.Refused
				if !errors.As(err, &ref) || !hasCheck(ref.Refusals, tc.check) {
					t.Fatalf("err %v, want a %s refusal", err, tc.check)
				}
				if e.diskHash(t) != before {
					t.Fatal("the disk was written")
				}
				// the agent's failure path writes the log
				if _, err := SaveStickLog(e.Env, st, StickLogName(st, "refused")); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			if net.n != 0 {
				t.Errorf("%d DHCP attempts: the image is on the stick", net.n)
			}
			if tc.stickErr == nil && !strings.Contains(events.String(), `"event":"skip","stage":"dhcp","detail":"no network needed`) {
				t.Errorf("dhcp not reported as skipped:\n%s", events.String())
			}
			if tc.stickErr == nil {
				if len(e.store.refs) == 0 || e.store.refs[0] != "file:"+StickDir+"/b.thaw" {
					t.Errorf("opened %v, want the file on the stick", e.store.refs)
				}
				if !fs.unmounted {
					t.Error("the stick was left mounted after Close")
				}
			}
			if len(fs.logs) != tc.logs {
				t.Fatalf("%d logs on the stick, want %d", len(fs.logs), tc.logs)
			}
			for name, b := range fs.logs {
				want := "-b-handed-over.log"
				if tc.check != "" {
					want = "-b-refused.log"
				}
				if !strings.HasSuffix(name, want) || !bytes.Contains(b, []byte("everything the console said")) {
					t.Errorf("log %s: %q", name, b)
				}
			}
		})
	}
}

func hasCheck(rs []plan.Refusal, c plan.Check) bool {
	for _, r := range rs {
		if r.Check == c {
			return true
		}
	}
	return false
}

func TestStickNeedsNet(t *testing.T) {
	f := loadFixture(t)
	e := newEnv(t, f, f.bundle)
	net := &countNet{}
	e.Stick, e.Net = &fakeStick{}, net
	cfg := stickConfig(f, "thaw.disk=vda thaw.log=http://10.0.0.1/log/b")
	st, err := Run(context.Background(), e.Env, Discard, cfg)
	st.Close()
	if !errors.Is(err, errJumped) || net.n != 1 {
		t.Fatalf("err %v, %d DHCP attempts: a remote log needs the network", err, net.n)
	}
}

func TestPartsBlob(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(dir, "b.thaw")
	for i, off := 0, 0; off < len(data); i, off = i+1, off+4096 {
		end := min(off+4096, len(data))
		os.WriteFile(fmt.Sprintf("%s.%03d", path, i), data[off:end], 0o644)
	}
	b, err := openLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(data)) {
		t.Fatalf("size %d", b.Size())
	}
	for _, c := range []struct{ off, n int }{{0, 10000}, {4000, 200}, {4096, 4096}, {8190, 1810}, {9999, 1}} {
		got := make([]byte, c.n)
		if _, err := b.ReadAt(got, int64(c.off)); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Errorf("%+v: wrong bytes", c)
		}
	}
	if n, err := b.ReadAt(make([]byte, 10), 9995); n != 5 || err != io.EOF {
		t.Errorf("read past the end: %d %v", n, err)
	}

	// a part cut short in the middle is named
	os.Truncate(path+".001", 100)
	if _, err := openLocal(path); err == nil || !strings.Contains(err.Error(), "b.thaw.001 holds 100 bytes, not 4096") {
		t.Errorf("cut part: %v", err)
	}
	if _, err := openLocal(filepath.Join(dir, "none.thaw")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}
