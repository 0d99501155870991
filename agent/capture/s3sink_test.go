package capture

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/scripts/harness"
)

// TestS3Sink stores a bundle in a real S3 server (versitygw) as the
// frozen phase does: one signed PUT per record on the sink's own socket,
// on a kept connection, and on one the server closes after each answer.
// The bundle then reads back whole from the server's directory.
func TestS3Sink(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "keep-alive", false: "connection-close"}[keep], func(t *testing.T) {
			srv, c := startVersitygw(t, keep)
			o, _ := s3.Parse("s3://images/fleet/db1.thaw", "")
			sink, err := openS3Sink(c, o, SinkOptions{Stall: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			data := make([]byte, 5<<20)
			rand.New(rand.NewSource(3)).Read(data)
			bw, err := bundle.NewWriter(sink, bundle.WriterOptions{ChunkSize: 1 << 20, Store: &bundle.StoreOptions{Have: func(string) bool { return false }, ChunkKey: bytes.Repeat([]byte{1}, bundle.ChunkKeySize), Records: sink}})
			if err != nil {
				t.Fatal(err)
			}
			sw, _ := bw.Stream("disk0", bundle.KindDisk)
			sw.Write(data)
			if err := sw.Close(); err != nil {
				t.Fatal(err)
			}
			m := &manifest.Manifest{Version: manifest.Version, Kind: "capture", Hostname: "db1", Kernel: manifest.Kernel{Release: "6.12.0-test"}}
			if _, err := bw.Finish(m, nil); err != nil {
				t.Fatal(err)
			}
			if err := sink.Finish(); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(srv.Root, "images", "fleet")
			f, err := os.Open(filepath.Join(dir, "db1.thaw"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			br, err := bundle.Open(f, st.Size(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			br.SetChunkSource(bundle.DirSource(dir))
			r, err := br.OpenStream("disk0")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
			}
		})
	}
}

// A wrong secret: the store's refusal is named, and the record fails.
func TestS3SinkRefused(t *testing.T) {
	srv, _ := startVersitygw(t, true)
	bad, err := s3.New(s3.Config{Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: "not-the-secret"})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := s3.Parse("s3://images/db1.thaw", "")
	sink, err := openS3Sink(bad, o, SinkOptions{Stall: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	err = sink.Record(bundle.RecordChunk, [32]byte{1}, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("a PUT with a wrong secret: %v", err)
	}
	// Nothing reached the bucket.
	if ents, _ := os.ReadDir(filepath.Join(srv.Root, "images")); len(ents) != 0 {
		t.Errorf("the bucket holds %d entries", len(ents))
	}
	// A server that is gone: the sink says it cannot connect.
	srv.Stop()
	if err := sink.Record(bundle.RecordChunk, [32]byte{2}, []byte("y")); err == nil {
		t.Error("a PUT to a stopped server succeeded")
	}
}

func startVersitygw(t *testing.T, keepAlive bool) (*harness.S3Server, *s3.Client) {
	return harness.StartS3For(t, harness.S3Options{KeepAlive: keepAlive, Buckets: []string{"images"}})
}
