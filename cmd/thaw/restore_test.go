package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/harness"
)

// smallStream is a snapshot stream of n data pages.
func smallStream(n int) []byte { return harness.SnapshotStream(n) }

// writeImage writes an LZO image of n pages into the swap area at ref.
func writeImage(t *testing.T, ref string, n int) {
	t.Helper()
	swap, err := blockdev.Open(ref, true)
	if err != nil {
		t.Fatal(err)
	}
	defer swap.Close()
	w, err := swsusp.NewWriter(swap, swap.Size, 0, swsusp.WriterOptions{Compression: swsusp.CompressLZO})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteStream(bytes.NewReader(smallStream(n))); err != nil {
		t.Fatal(err)
	}
}

var thawTestBin string

func buildThaw(t *testing.T) string {
	t.Helper()
	if thawTestBin == "" {
		thawTestBin = filepath.Join(os.TempDir(), "thaw-cmd-test")
		if out, err := exec.Command("go", "build", "-o", thawTestBin, ".").CombinedOutput(); err != nil {
			t.Fatalf("build: %v %s", err, out)
		}
	}
	return thawTestBin
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(buildThaw(t), args...).CombinedOutput()
	return string(out), err
}

func hashFile(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestExportRestoreRefusals: export a disk holding an image; restore
// refuses a target too small, the wrong number of disks and a bundle
// edited after signing, writing nothing; then restores and the image at
// the resume partition verifies.
func TestExportRestoreRefusals(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "junk"), bytes.Repeat([]byte("data"), 1<<18), 0o644)
	dev, err := blockdev.Open(disk+"#1", true)
	if err != nil {
		t.Fatal(err)
	}
	dev.WriteAt(bytes.Repeat([]byte("root filesystem "), 1<<16), 0)
	dev.Close()
	writeImage(t, disk+"#2", 60)
	key := filepath.Join(dir, "k")
	if out, err := run(t, "keygen", "--out", key); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	b := filepath.Join(dir, "b.thaw")
	if out, err := run(t, "export", "--from", disk+"#2", "--to", b, "--key", key+".key"); err == nil || !strings.Contains(out, "--recipient") || !strings.Contains(out, "--plaintext") {
		t.Fatalf("export with neither --recipient nor --plaintext: %v %s", err, out)
	}
	if out, err := run(t, "export", "--plaintext", "--from", disk+"#2", "--to", b, "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	if out, err := run(t, "inspect", "--pubkey", key+".pub", b); err != nil || !strings.Contains(out, "signature verified") || !strings.Contains(out, "PLAINTEXT") {
		t.Fatalf("inspect: %v %s", err, out)
	}
	// thaw plan on this host: its disks hold data and none was named, so
	// the plan refuses (exit 3) and says why, writing nothing.
	if out, err := run(t, "plan", "--json", "--pubkey", key+".pub", "--image", b); err == nil || !strings.Contains(out, `"check": "disk"`) || !strings.Contains(out, `"ok": false`) {
		t.Fatalf("plan: %v %s", err, out)
	}

	small := filepath.Join(dir, "small.img")
	os.WriteFile(small, []byte("keep me"), 0o644)
	os.Truncate(small, 20<<20)
	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, []byte("keep me too"), 0o644)
	os.Truncate(target, 40<<20)
	edited := filepath.Join(dir, "edited.thaw")
	eb, _ := os.ReadFile(b)
	i := bytes.Index(eb, []byte(`"kind": "export"`))
	copy(eb[i:], `"kind": "exporT"`)
	os.WriteFile(edited, eb, 0o644)
	hs, ht := hashFile(t, small), hashFile(t, target)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"too-small", []string{"--image", b, "--disk", small}, "too small"},
		{"two-disks", []string{"--image", b, "--disk", target, "--disk", small}, "carries 1 disk(s) but 2"},
		{"edited-manifest", []string{"--image", edited, "--disk", target}, "edited after signing"},
	} {
		out, err := run(t, append([]string{"restore", "--pubkey", key + ".pub"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "nothing was written") {
			t.Errorf("%s: %v\n%s", tc.name, err, out)
		}
		if hashFile(t, small) != hs || hashFile(t, target) != ht {
			t.Fatalf("%s: a refused restore wrote to a disk", tc.name)
		}
	}
	out, err := run(t, "restore", "--pubkey", key+".pub", "--image", b, "--disk", target)
	if err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	src, _ := os.ReadFile(disk)
	dst, _ := os.ReadFile(target)
	if !bytes.Equal(src, dst) {
		t.Fatal("the restored disk differs from the source disk")
	}
	if out, err := run(t, "inspect", target+"#2"); err != nil || !strings.Contains(out, "RESUMABLE") {
		t.Fatalf("restored resume image: %v %s", err, out)
	}
}

// TestRestoreToResumeArea: with --resume the image goes to a separate swap
// area, the copy inside the restored disk stays unresumable, and an area on
// a --disk target is refused.
func TestRestoreToResumeArea(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	swap, _ := blockdev.Open(disk+"#2", true)
	w, _ := swsusp.NewWriter(swap, swap.Size, 0, swsusp.WriterOptions{Compression: swsusp.CompressNone})
	if _, err := w.WriteStream(bytes.NewReader(smallStream(30))); err != nil {
		t.Fatal(err)
	}
	swap.Close()
	key := filepath.Join(dir, "k")
	run(t, "keygen", "--out", key)
	enc := filepath.Join(dir, "r")
	if out, err := run(t, "keygen", "--recipient", "--out", enc); err != nil {
		t.Fatalf("keygen --recipient: %v %s", err, out)
	}
	if st, err := os.Stat(enc + ".identity"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v", err)
	}
	b := filepath.Join(dir, "b.thaw")
	if out, err := run(t, "export", "--recipient", enc+".recipient", "--from", disk+"#2", "--to", b, "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, 40<<20)
	// Encrypted: without the identity, refused before any write, naming
	// the recipient; inspect checks what it can.
	hb := hashFile(t, target)
	rcp, _ := os.ReadFile(enc + ".recipient")
	if out, err := run(t, "restore", "--pubkey", key+".pub", "--image", b, "--disk", target); err == nil || !strings.Contains(out, strings.TrimSpace(string(rcp))) || !strings.Contains(out, "nothing was written") {
		t.Fatalf("restore without the identity: %v %s", err, out)
	}
	if hashFile(t, target) != hb {
		t.Fatal("a refused restore wrote to the disk")
	}
	if out, err := run(t, "inspect", "--pubkey", key+".pub", b); err != nil || !strings.Contains(out, "not decrypted") {
		t.Fatalf("inspect without the identity: %v %s", err, out)
	}
	area := filepath.Join(dir, "area.img")
	if err := harness.MakeGPTDisk(area, 24, []harness.Part{{Name: "x", SizeMB: 2}, {Name: "resume", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "restore", "--pubkey", key+".pub", "--identity", enc+".identity", "--image", b, "--disk", target, "--resume", target+"#2"); err == nil || !strings.Contains(out, "which the restore overwrites") {
		t.Fatalf("--resume on a --disk target: %v %s", err, out)
	}
	out, err := run(t, "restore", "--json", "--pubkey", key+".pub", "--identity", enc+".identity", "--image", b, "--disk", target, "--resume", area+"#2")
	if err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	if !strings.Contains(out, "resume=PARTUUID=") {
		t.Fatalf("no resume args: %s", out)
	}
	if out, err := run(t, "inspect", area+"#2"); err != nil || !strings.Contains(out, "RESUMABLE") {
		t.Fatalf("resume area: %v %s", err, out)
	}
	if out, _ := run(t, "inspect", target+"#2"); !strings.Contains(out, "NO IMAGE") {
		t.Fatalf("the copy inside the restored disk must not be resumable: %s", out)
	}
}

// The audit's reproduction: rewrite onto the same file under another
// path (d/x/../a.img) destroyed the only image. It is refused, and the
// image stays.
func TestRewriteRefusesSameBytes(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	if err := harness.MakeGPTDisk(img, 24, []harness.Part{{Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	writeImage(t, img+"#1", 60)
	os.MkdirAll(filepath.Join(dir, "x"), 0o755)
	os.Link(img, filepath.Join(dir, "hard.img"))
	before := hashFile(t, img)
	for _, to := range []string{filepath.Join(dir, "x", "..", "a.img") + "#1", filepath.Join(dir, "hard.img") + "#1", img} {
		out, err := run(t, "rewrite", "--from", img+"#1", "--to", to, "--compress", "none")
		if err == nil || !strings.Contains(out, "same bytes") {
			t.Errorf("rewrite --to %s: %v %s", to, err, out)
		}
	}
	if hashFile(t, img) != before {
		t.Fatal("the image changed although the rewrite was refused")
	}
	if out, err := run(t, "inspect", img+"#1"); err != nil {
		t.Fatalf("inspect after the refused rewrites: %v %s", err, out)
	}
}

// TestRefusalJSON: thaw restore --json and thaw plan --json print the
// same refusal objects for the same bad bundle.
func TestRefusalJSON(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	writeImage(t, disk+"#2", 30)
	key, other := filepath.Join(dir, "k"), filepath.Join(dir, "other")
	run(t, "keygen", "--out", key)
	run(t, "keygen", "--out", other)
	b := filepath.Join(dir, "b.thaw")
	if out, err := run(t, "export", "--plaintext", "--from", disk+"#2", "--to", b, "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	truncated := filepath.Join(dir, "truncated.thaw")
	whole, _ := os.ReadFile(b)
	os.WriteFile(truncated, whole[:len(whole)-200], 0o644)
	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, 40<<20)
	for _, tc := range []struct {
		name, image, pub string
		check            plan.Check
	}{
		{"signed by another key", b, other + ".pub", plan.CheckSignature},
		{"truncated", truncated, key + ".pub", plan.CheckImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2][]plan.Refusal
			for i, args := range [][]string{
				{"plan", "--json", "--image", tc.image, "--pubkey", tc.pub},
				{"restore", "--json", "--image", tc.image, "--pubkey", tc.pub, "--disk", target},
			} {
				out, err := thawStdout(t, args...)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 3 {
					t.Fatalf("%s: %v, want exit status 3", args[0], err)
				}
				var res struct {
					OK       bool           `json:"ok"`
					Refusals []plan.Refusal `json:"refusals"`
				}
				if err := json.Unmarshal(out, &res); err != nil || res.OK {
					t.Fatalf("%s --json printed %s (%v)", args[0], out, err)
				}
				got[i] = res.Refusals
			}
			if !reflect.DeepEqual(got[0], got[1]) || len(got[0]) != 1 || got[0][0].Check != tc.check {
				t.Fatalf("plan refusals %+v, restore refusals %+v; want the same one, check %s", got[0], got[1], tc.check)
			}
		})
	}
}

// thawStdout runs thaw and returns its standard output alone.
func thawStdout(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return exec.Command(buildThaw(t), args...).Output()
}

// TestAgentJSON: thaw agent --json prints its stages as JSON lines and a
// refusal as the same object thaw plan and thaw restore print.
func TestAgentJSON(t *testing.T) {
	out, err := thawStdout(t, "agent", "--json", "--cmdline", "console=ttyS0 thaw.image=ftp://store/b.thaw")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("%v, want exit status 3\n%s", err, out)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var events []map[string]any
	for dec.More() {
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("stdout is not JSON lines: %v\n%s", err, out)
		}
		events = append(events, v)
	}
	if len(events) < 2 || events[0]["event"] != "begin" || events[0]["stage"] != "params" {
		t.Fatalf("events %v", events)
	}
	last := events[len(events)-1]
	rs, _ := last["refusals"].([]any)
	if last["ok"] != false || len(rs) != 1 || rs[0].(map[string]any)["check"] != string(plan.CheckParams) {
		t.Fatalf("refusal %v", last)
	}
}
