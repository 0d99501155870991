package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/s3"
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
	srv, _ := harness.StartS3For(t, harness.S3Options{KeepAlive: true, Buckets: []string{"images"}})
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

// thaw restore --follow on a bucket: the restore starts before the
// capture's objects exist, polls for the pre-copy, writes it, polls for
// the bundle with the pre-copy's id, and writes only the chunks that
// differ; the disk ends as a restore of the bundle alone leaves it.
func TestS3FollowRestore(t *testing.T) {
	dir := t.TempDir()
	srv, c := harness.StartS3For(t, harness.S3Options{KeepAlive: true, Buckets: []string{"images"}})
	env := srv.Env()
	ctx := context.Background()

	// The capture's bundle, made by thaw export beside the name followed.
	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(disk)
	for off := 2 << 20; off < 9<<20; off += 4096 {
		copy(data[off:], fmt.Sprintf("root filesystem block %d", off))
	}
	os.WriteFile(disk, data, 0o644)
	writeImage(t, disk+"#2", 30)
	key := filepath.Join(dir, "k")
	run(t, "keygen", "--out", key)
	if out, err := runEnv(t, env, "export", "--plaintext", "--from", disk+"#2", "--disk", disk, "--to", "s3://images/lab/src.thaw", "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	o, _, err := c.Get(ctx, s3.Object{Bucket: "images", Key: "lab/src.thaw"})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := io.ReadAll(o)
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	src, err := bundle.Open(bytes.NewReader(obj), int64(len(obj)), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := *src.Manifest
	m.Image, m.Resume, m.Mailbox = nil, nil, nil
	priv, err := bundle.LoadPrivateKey(key+".key", "")
	if err != nil {
		t.Fatal(err)
	}
	// The pre-copy: the disk as it was before a MiB of it changed.
	before, _ := os.ReadFile(disk)
	copy(before[5<<20:], bytes.Repeat([]byte("before the freeze "), 1<<16))
	precopy := func() error {
		up := s3.NewUploader(ctx, c, s3.Object{Bucket: "images", Key: "lab/b.thaw.precopy"}, 4)
		w, err := bundle.NewWriter(nil, bundle.WriterOptions{ID: src.Index.ID, Precopy: true, Store: &bundle.StoreOptions{Records: up}})
		if err != nil {
			return err
		}
		sw, _ := w.Stream(m.Disks[0].Stream, bundle.KindDisk)
		sw.Write(before)
		sw.Close()
		if _, err := w.Finish(&m, &priv); err != nil {
			return err
		}
		return up.Wait()
	}

	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, 40<<20)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := runEnv(t, env, "restore", "--follow", "--json", "--pubkey", key+".pub", "--image", "s3://images/lab/b.thaw", "--disk", target)
		done <- result{out, err}
	}()
	time.Sleep(1500 * time.Millisecond) // the restore waits for the pre-copy
	if err := precopy(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // it writes it, then waits for the bundle
	if err := c.Put(ctx, s3.Object{Bucket: "images", Key: "lab/b.thaw"}, bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the follow did not end")
	}
	if res.err != nil {
		t.Fatalf("restore --follow: %v\n%s", res.err, res.out)
	}
	for _, l := range strings.Split(res.out, "\n") {
		if strings.Contains(l, "pre-copy") || strings.Contains(l, "follow") || strings.Contains(l, "MiB written") {
			t.Logf("%s", l)
		}
	}
	for _, want := range []string{"waiting for its pre-copy", "pre-copy of bundle id " + src.Index.ID, `"kept_bytes"`} {
		if !strings.Contains(res.out, want) {
			t.Errorf("restore --follow does not say %q:\n%s", want, res.out)
		}
	}
	var r restoreResult
	if i := strings.Index(res.out, "{\n"); i >= 0 {
		json.Unmarshal([]byte(res.out[i:strings.LastIndex(res.out, "}")+1]), &r)
	}
	if len(r.Disks) != 1 || r.Disks[0].KeptBytes == 0 || r.Disks[0].KeptBytes >= r.Disks[0].Bytes {
		t.Errorf("disks %+v: want some bytes kept from the pre-copy, not all", r.Disks)
	}
	whole := filepath.Join(dir, "whole.img")
	os.WriteFile(whole, nil, 0o644)
	os.Truncate(whole, 40<<20)
	if out, err := runEnv(t, env, "restore", "--pubkey", key+".pub", "--image", "s3://images/lab/src.thaw", "--disk", whole); err != nil {
		t.Fatalf("restore of the bundle alone: %v %s", err, out)
	}
	if hashFile(t, target) != hashFile(t, whole) {
		t.Error("the followed restore's disk differs from the bundle's")
	}
}
