//go:build vm

package vmtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/bundle"
)

// TestServerExportRestore: a server that hibernated by itself is exported
// into a signed bundle (memory, its disk, its kernel and initrd); thaw
// restore writes a fresh disk from the bundle; the same hardware boots the
// source's kernel with the printed resume= and the workload carries on.
// Afterwards fsck of the root filesystem is clean. A damaged bundle and a
// wrong key are refused and the target disk stays byte-identical.
func TestServerExportRestore(t *testing.T) {
	t.Parallel()
	h := serverHibernated(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if _, err := thaw(t, "keygen", "--out", key); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if _, err := thaw(t, "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "r")
	if _, err := thaw(t, "keygen", "--recipient", "--out", enc); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(dir, "server.thaw")
	if _, err := thaw(t, "export", "--from", h.disk+"#2", "--disk", h.disk, "--to", bundlePath, "--key", key+".key",
		"--recipient", enc+".recipient", "--kernel", h.s.Vmlinuz, "--initrd", h.s.Initrd); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(bundlePath)
	t.Logf("bundle: %d MiB", st.Size()>>20)
	// The bundle's memory is the image the kernel logged.
	out, err := thaw(t, "inspect", "--json", "--pubkey", key+".pub", "--identity", enc+".identity", bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	var bi struct {
		Signature string `json:"signature"`
		Manifest  struct {
			Image struct {
				Pages     uint64 `json:"pages"`
				DataPages uint64 `json:"data_pages"`
				ZeroPages uint64 `json:"zero_pages"`
			} `json:"image"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal(out, &bi); err != nil {
		t.Fatal(err)
	}
	if im := bi.Manifest.Image; bi.Signature != "verified" || im.DataPages != h.klog.Copied || im.ZeroPages != h.klog.Zero || im.Pages-1 != h.klog.Saving {
		t.Fatalf("bundle: signature %s, image %+v; the kernel logged %+v", bi.Signature, im, h.klog)
	}

	target := filepath.Join(dir, "target.img")
	hdisk, _ := os.Stat(h.disk)
	if err := os.WriteFile(target, []byte("not empty: restore must overwrite this"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, hdisk.Size()); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, target)

	// Refusals first: nothing may be written.
	bad := filepath.Join(dir, "bad.thaw")
	copyFile(t, bundlePath, bad)
	flipInStream(t, bad, "disk0", 3)
	for _, tc := range []struct {
		name, image, pub, id, want string
		extra                      []string
		partly                     bool
	}{
		{"corrupt-chunk", bad, key + ".pub", enc + ".identity", "sha256 mismatch", []string{"--verify", "first"}, false},
		{"wrong-key", bundlePath, other + ".pub", enc + ".identity", "signature does not verify", nil, false},
		{"no-identity", bundlePath, key + ".pub", "", "encrypted to age1", nil, false},
		// One pass (--verify stream; the default onto a blank disk): written
		// up to the damaged chunk, and said so.
		{"corrupt-chunk-stream", bad, key + ".pub", enc + ".identity", "sha256 mismatch", []string{"--verify", "stream"}, true},
	} {
		args := append([]string{"restore", "--image", tc.image, "--pubkey", tc.pub, "--disk", target}, tc.extra...)
		if tc.id != "" {
			args = append(args, "--identity", tc.id)
		}
		out, err = thaw(t, args...)
		state := "nothing was written"
		if tc.partly {
			state = "were partly written, with nothing resumable on them"
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), state) {
			t.Fatalf("%s: restore %v %s, want a refusal naming %q and %q", tc.name, err, out, tc.want, state)
		}
		if changed := fileHash(t, target) != before; changed != tc.partly {
			t.Fatalf("%s: target changed %v, want %v", tc.name, changed, tc.partly)
		}
	}

	cmdline := restoreTo(t, bundlePath, key+".pub", target, h.s.Cmdline, "--identity", enc+".identity")
	vm := serverVM(t, h.s, "server-restored", cmdline, target, blankDisk(t, dir))
	defer failWithConsole(t, vm)
	checkResumed(t, vm, h)
	fsckRoot(t, target)
}

// restoreTo runs thaw restore of image onto target and returns cmdline
// with its resume= replaced by the printed resume arguments.
func restoreTo(t *testing.T, image, pub, target, cmdline string, extra ...string) string {
	t.Helper()
	out, err := thaw(t, append([]string{"restore", "--json", "--image", image, "--pubkey", pub, "--disk", target}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		ResumeArgs []string           `json:"resume_args"`
		Stages     map[string]float64 `json:"stage_seconds"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.ResumeArgs) == 0 {
		t.Fatalf("restore result %s: %v", out, err)
	}
	t.Logf("restore stages (s): %v; resume args %v", res.Stages, res.ResumeArgs)
	return regexp.MustCompile(`resume=\S+`).ReplaceAllString(cmdline, strings.Join(res.ResumeArgs, " "))
}

// flipInStream flips a byte inside the stored bytes of chunk i of a stream.
func flipInStream(t *testing.T, path, stream string, i int) {
	t.Helper()
	out, err := thaw(t, "inspect", "--json", path)
	if err != nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatal(err)
	}
	var r struct {
		Streams []struct {
			Name   string `json:"name"`
			Chunks []struct {
				At     int64  `json:"at"`
				Stored int64  `json:"stored"`
				SHA256 string `json:"sha256"`
			} `json:"chunks"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("inspect --json of a bundle: %v\n%s", err, out)
	}
	for _, s := range r.Streams {
		if s.Name != stream {
			continue
		}
		n := 0
		for _, c := range s.Chunks {
			if c.Stored == 0 {
				continue
			}
			if n == i && c.At == 0 {
				// In a store: the chunk's own file, copied first (the
				// store's may be a hard link to it).
				p := filepath.Join(filepath.Dir(path), filepath.FromSlash(bundle.ChunkPath(c.SHA256)))
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0x10
				os.Remove(p)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if n == i {
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 1)
				f.ReadAt(b, c.At+c.Stored/2)
				b[0] ^= 0x10
				f.WriteAt(b, c.At+c.Stored/2)
				f.Close()
				return
			}
			n++
		}
	}
	t.Fatalf("no stored chunk %d in stream %s", i, stream)
}

// fsckRoot runs e2fsck -fn on the root filesystem of a server disk: on
// the LVM layout the root LV, the first LV of vg0 on partition 1, after
// LVM's 1 MiB of metadata, 1536 MiB long; on the plain layout partition 1.
// lvmType is the GPT type of an LVM physical volume.
const lvmType = "e6d6d379-f507-44c2-a23c-238f2a3df928"

func fsckRoot(t *testing.T, disk string) {
	t.Helper()
	d, err := probe.DescribeDisk(disk)
	if err != nil || len(d.Partitions) == 0 {
		t.Fatalf("the partitions of %s: %v", disk, err)
	}
	p := d.Partitions[0]
	off, size := p.Start+1<<20, int64(1536)<<20
	if !strings.EqualFold(p.Type, lvmType) {
		off, size = p.Start, p.Size
	}
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10), disk).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", loop).Run()
	fsck, err := exec.Command("e2fsck", "-f", "-n", loop).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn of the root filesystem after resume: %v\n%s", err, fsck)
	}
	t.Logf("fsck of the root filesystem: clean\n%s", fsck)
}
