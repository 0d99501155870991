package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/scripts/harness"
)

// runEnv runs thaw with env added to its environment.
func runEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(buildThaw(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// An export into a real S3 server (versitygw), read back by every reader:
// inspect from s3://, restore from a presigned list in a file (as on a
// stick), restore through the list's presigned URL with no credential,
// and gc once the bundle is deleted.
func TestS3ExportPresignRestore(t *testing.T) {
	dir := t.TempDir()
	srv, err := harness.StartS3(harness.S3Options{Root: filepath.Join(dir, "s3"), Log: io.Discard, KeepAlive: true, Buckets: []string{"images"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	env := srv.Env()

	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	writeImage(t, disk+"#2", 30)
	key, rcpt := filepath.Join(dir, "k"), filepath.Join(dir, "r")
	run(t, "keygen", "--out", key)
	run(t, "keygen", "--recipient", "--out", rcpt)
	const ref = "s3://images/lab/b.thaw"
	if out, err := runEnv(t, nil, "export", "--recipient", rcpt+".recipient", "--from", disk+"#2", "--to", ref, "--key", key+".key", "--s3-endpoint", srv.Endpoint); err == nil || !strings.Contains(out, "AWS_ACCESS_KEY_ID") {
		t.Fatalf("export without credentials: %v %s", err, out)
	}
	if out, err := runEnv(t, env, "export", "--recipient", rcpt+".recipient", "--from", disk+"#2", "--to", ref, "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	chunks, _ := filepath.Glob(filepath.Join(srv.Root, "images", "lab", "chunks", "*", "*"))
	if len(chunks) == 0 {
		t.Fatal("the export stored no chunk objects")
	}
	if out, err := runEnv(t, env, "inspect", "--pubkey", key+".pub", "--identity", rcpt+".identity", ref); err != nil || !strings.Contains(out, "signature verified") {
		t.Fatalf("inspect %s: %v %s", ref, err, out)
	}

	restoreTo := func(image string, env []string) [32]byte {
		t.Helper()
		target := filepath.Join(t.TempDir(), "target.img")
		os.WriteFile(target, nil, 0o644)
		os.Truncate(target, 40<<20)
		if out, err := runEnv(t, env, "restore", "--pubkey", key+".pub", "--identity", rcpt+".identity", "--image", image, "--disk", target); err != nil {
			t.Fatalf("restore from %s: %v %s", image, err, out)
		}
		return hashFile(t, target)
	}
	want := restoreTo(ref, env)
	list := filepath.Join(dir, "b.presigned")
	if out, err := runEnv(t, env, "presign", "--expires", "1h", "--out", list, ref); err != nil || !strings.Contains(out, "#sha256=") {
		t.Fatalf("presign --out: %v %s", err, out)
	}
	if got := restoreTo(list, nil); got != want {
		t.Error("the restore from the presigned list in a file differs")
	}
	if out, err := runEnv(t, nil, "inspect", "--pubkey", key+".pub", "--identity", rcpt+".identity", list); err != nil || !strings.Contains(out, "signature verified") || strings.Contains(out, "X-Amz-Signature") {
		t.Fatalf("inspect of the presigned list: %v %s", err, out)
	}
	out, err := runEnv(t, env, "presign", ref)
	if err != nil {
		t.Fatalf("presign: %v %s", err, out)
	}
	image, ok := strings.CutPrefix(strings.TrimSpace(out[strings.LastIndex(out, "thaw.image="):]), "thaw.image=")
	if !ok || !strings.Contains(image, "X-Amz-Signature=") {
		t.Fatalf("presign printed %s", out)
	}
	if got := restoreTo(image, nil); got != want {
		t.Error("the restore through the presigned URL differs")
	}
	// A tampered list's signature: refused by the store, and named.
	bad := strings.Replace(image, "X-Amz-Signature=", "X-Amz-Signature=00", 1)
	target := filepath.Join(dir, "t2.img")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, 40<<20)
	if out, err := runEnv(t, nil, "restore", "--pubkey", key+".pub", "--identity", rcpt+".identity", "--image", bad, "--disk", target); err == nil || !strings.Contains(out, "thaw presign") || strings.Contains(out, "X-Amz-Signature=00") {
		t.Errorf("a tampered presigned URL: %v %s", err, out)
	}

	// gc: with the bundle gone, every chunk goes (no grace), the list
	// objects are not bundles.
	os.Remove(filepath.Join(srv.Root, "images", "lab", "b.thaw"))
	if out, err := runEnv(t, env, "gc", "--store", "s3://images/lab/", "--grace", "0s"); err != nil || !strings.Contains(out, "0 bundles name 0 chunks; removed") {
		t.Fatalf("gc: %v %s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(srv.Root, "images", "lab", "chunks", "*", "*")); len(left) != 0 {
		t.Errorf("gc left %d chunks", len(left))
	}
}
