package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/netfetch/store"
	"github.com/thawlinux/thaw/scripts/harness"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		ref, def, bucket, key, dir string
		bad                        bool
	}{
		{ref: "s3://images/web1/web1.thaw", bucket: "images", key: "web1/web1.thaw", dir: "web1/"},
		{ref: "s3://images/web1.thaw", bucket: "images", key: "web1.thaw", dir: ""},
		{ref: "s3://images/fleet/", def: "h.thaw", bucket: "images", key: "fleet/h.thaw", dir: "fleet/"},
		{ref: "s3://images", def: "h.thaw", bucket: "images", key: "h.thaw"},
		{ref: "s3://images/fleet/", bad: true},
		{ref: "s3://Images/a", bad: true},
		{ref: "s3://ab/a", bad: true},
		{ref: "s3://images/a//b", bad: true},
		{ref: "s3://images/../b", bad: true},
		{ref: "s3://images/a?x", bad: true},
		{ref: "https://images/a", bad: true},
	} {
		o, err := s3.Parse(c.ref, c.def)
		if c.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %+v, want an error", c.ref, o)
			}
			continue
		}
		if err != nil || o.Bucket != c.bucket || o.Key != c.key || o.Dir() != c.dir {
			t.Errorf("Parse(%q) = %+v (dir %q), %v", c.ref, o, o.Dir(), err)
		}
	}
	o, _ := s3.Parse("s3://images/web1/web1.thaw", "")
	sum := strings.Repeat("ab", 32)
	if got := o.Chunk(sum).String(); got != "s3://images/web1/chunks/ab/"+sum {
		t.Errorf("Chunk = %s", got)
	}
}

func TestList(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	l := &s3.List{Bundle: "https://s3.lab/b/x.thaw?X-Amz-Signature=1", Chunks: map[string]string{sum: "https://s3.lab/b/chunks/0f/" + sum + "?X-Amz-Signature=2"}}
	var buf bytes.Buffer
	if err := l.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !s3.IsList(buf.Bytes()) {
		t.Fatal("IsList: false for a list")
	}
	got, err := s3.ParseList(&buf)
	if err != nil || got.Bundle != l.Bundle || got.Chunks[sum] != l.Chunks[sum] {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for name, text := range map[string]string{
		"no magic":     "bundle https://a/b\n",
		"no bundle":    s3.ListMagic + "chunk " + sum + " https://a/c\n",
		"two bundles":  s3.ListMagic + "bundle https://a/b\nbundle https://a/c\n",
		"bad sum":      s3.ListMagic + "bundle https://a/b\nchunk 0f0f https://a/c\n",
		"upper sum":    s3.ListMagic + "bundle https://a/b\nchunk " + strings.ToUpper(sum) + " https://a/c\n",
		"twice":        s3.ListMagic + "bundle https://a/b\nchunk " + sum + " https://a/c\nchunk " + sum + " https://a/c\n",
		"not http":     s3.ListMagic + "bundle file:///etc/passwd\n",
		"no host":      s3.ListMagic + "bundle https:///b\n",
		"extra field":  s3.ListMagic + "bundle https://a/b x\n",
		"unknown line": s3.ListMagic + "bundle https://a/b\nkey abc\n",
		"empty":        "",
	} {
		if _, err := s3.ParseList(strings.NewReader(text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if r := s3.Redact("https://a/b?X-Amz-Signature=s3cret"); strings.Contains(r, "s3cret") {
		t.Errorf("Redact kept the signature: %s", r)
	}
}

func FuzzParseList(f *testing.F) {
	sum := strings.Repeat("0f", 32)
	f.Add([]byte(s3.ListMagic + "bundle https://a/b?x=1\nchunk " + sum + " https://a/c\n"))
	f.Add([]byte(s3.ListMagic + "bundle http://a:1/b\n"))
	f.Add([]byte("thaw-presigned 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := s3.ParseList(bytes.NewReader(b))
		if err != nil {
			return
		}
		if l.Bundle == "" {
			t.Fatal("a list without its bundle parsed")
		}
		var buf bytes.Buffer
		if err := l.Write(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := s3.ParseList(&buf)
		if err != nil || again.Bundle != l.Bundle || len(again.Chunks) != len(l.Chunks) {
			t.Fatalf("written list does not parse back: %v", err)
		}
	})
}

// startS3 runs versitygw over a temporary directory with one bucket.
func startS3(t *testing.T) (*harness.S3Server, *s3.Client) {
	return harness.StartS3For(t, harness.S3Options{KeepAlive: true, Buckets: []string{"images"}})
}

// TestStoreInVersitygw writes a version 2 bundle into a real S3 server
// through the Uploader, twice: the second time only new chunks go; reads
// it back through presigned URLs; and signs a PUT that net/http sends.
func TestStoreInVersitygw(t *testing.T) {
	srv, c := startS3(t)
	ctx := context.Background()
	o, _ := s3.Parse("s3://images/web1/web1.thaw", "")
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(data)
	writeBundle(t, c, o, data)
	data[5] ^= 1 // one chunk differs
	o2 := o.Sibling("web1-2.thaw")
	writeBundle(t, c, o2, data)
	have, err := c.Chunks(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != 4 {
		t.Errorf("the bucket holds %d chunks, want 4 (3 + the one changed)", len(have))
	}
	// The objects are files of the server's directory, private.
	st, err := os.Stat(filepath.Join(srv.Root, "images", "web1", "web1-2.thaw"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("bundle object: %v %v", st, err)
	}
	// Read back through presigned URLs, with no credential.
	obj, size, err := c.Get(ctx, o2)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	sums, err := bundle.StoreObjectChunks(obj, size)
	if err != nil || len(sums) != 3 {
		t.Fatalf("chunks of %s: %v %v", o2, sums, err)
	}
	for _, s := range sums {
		u, err := c.Presign(o2.Chunk(s), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || fmt.Sprintf("%x", sha256.Sum256(b)) != s {
			t.Errorf("presigned GET of chunk %s: %s, %d bytes", s[:12], resp.Status, len(b))
		}
	}
	// A presigned URL whose signature was changed is refused.
	u, _ := c.Presign(o2, time.Minute)
	resp, err := http.Get(strings.Replace(u, "X-Amz-Signature=", "X-Amz-Signature=0", 1))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("a tampered presigned URL was served")
		}
	}
	// SignPut: a request signed for a caller's own connection.
	body := []byte("signed put")
	req, err := c.SignPut(o.Sibling("raw"), fmt.Sprintf("%x", sha256.Sum256(body)), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("signed PUT: %v %v", resp, err)
	}
	// A body that does not match the signed hash is refused.
	req, _ = c.SignPut(o.Sibling("raw2"), fmt.Sprintf("%x", sha256.Sum256(body)), int64(len(body)))
	req.Body = io.NopCloser(bytes.NewReader([]byte("other body")))
	if resp, err := http.DefaultClient.Do(req); err == nil && resp.StatusCode == 200 {
		t.Error("a PUT whose body does not match its signed hash was stored")
	}
	// Wrong credentials are named.
	bad, _ := s3.New(s3.Config{Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: "wrong"})
	if _, err := bad.Chunks(ctx, o); err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}
	if _, err := s3.FromEnv(""); err != s3.ErrNoCredentials {
		t.Errorf("no credentials: %v", err)
	}
	creds := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n[lab]\naws_access_key_id = AK2\naws_secret_access_key = SK2\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_PROFILE", "lab")
	t.Setenv("AWS_ENDPOINT_URL", "http://s3.lab:7070")
	cfg, err := s3.FromEnv("")
	if err != nil || cfg.AccessKey != "AK2" || cfg.SecretKey != "SK2" || cfg.Endpoint != "http://s3.lab:7070" || cfg.Region != "us-east-1" {
		t.Errorf("from the profile: %+v %v", cfg, err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "EAK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ESK")
	t.Setenv("AWS_REGION", "eu-west-3")
	cfg, err = s3.FromEnv("https://other:9000")
	if err != nil || cfg.AccessKey != "EAK" || cfg.Endpoint != "https://other:9000" || cfg.Region != "eu-west-3" {
		t.Errorf("from the environment: %+v %v", cfg, err)
	}
	for _, e := range []string{"ftp://a", "https://a/path", "https://"} {
		if _, err := s3.New(s3.Config{Endpoint: e, AccessKey: "a", SecretKey: "b"}); err == nil {
			t.Errorf("endpoint %q accepted", e)
		}
	}
}

// writeBundle writes data as the disk stream of a version 2 bundle at o,
// through the Uploader: only the chunks the bucket lacks are sent.
func writeBundle(t *testing.T, c *s3.Client, o s3.Object, data []byte) {
	t.Helper()
	ctx := context.Background()
	have, err := c.Chunks(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	up := s3.NewUploader(ctx, c, o, 4)
	key := bytes.Repeat([]byte{7}, bundle.ChunkKeySize)
	bw, err := bundle.NewWriter(nil, bundle.WriterOptions{ChunkSize: 1 << 20, Store: &bundle.StoreOptions{Have: func(s string) bool { return have[s] }, ChunkKey: key, Records: up}})
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := bw.Stream("disk0", bundle.KindDisk)
	sw.Write(data)
	sw.Close()
	m := &manifest.Manifest{Version: manifest.Version, Kind: "export", Hostname: "web1", Kernel: manifest.Kernel{Release: "6.12.0-test"}}
	if _, err := bw.Finish(m, nil); err != nil {
		t.Fatal(err)
	}
	if err := up.Wait(); err != nil {
		t.Fatal(err)
	}
	st := bw.Stats()
	t.Logf("%s: %d chunks, %d sent", o, st.Chunks, st.Sent)
}

// TestGC collects a bucket's garbage: the chunks only a deleted bundle
// named go, once no capture holds a lease and they are older than the
// grace period; an unreadable bundle object stops the sweep.
func TestGC(t *testing.T) {
	srv, c := startS3(t)
	ctx := context.Background()
	a, _ := s3.Parse("s3://images/fleet/a.thaw", "")
	b := a.Sibling("b.thaw")
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(9)).Read(data)
	writeBundle(t, c, a, data) // chunks 1 2 3
	rand.New(rand.NewSource(10)).Read(data[:2<<20])
	writeBundle(t, c, b, data) // chunks 4 5 3
	if err := c.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	gc := func(grace time.Duration, dry bool) *store.GCReport {
		t.Helper()
		rep, err := s3.GC(ctx, c, "images", "fleet", store.GCOptions{Grace: grace, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := gc(time.Hour, false); rep.Removed != 0 || rep.Young != 2 {
		t.Errorf("within the grace period: %+v", rep)
	}
	// A capture of c.thaw in progress holds a lease: nothing goes.
	cap := a.Sibling("c.thaw")
	if err := c.Lease(ctx, cap); err != nil {
		t.Fatal(err)
	}
	if rep := gc(0, false); rep.Removed != 0 || rep.Leased != 2 || len(rep.Leases) != 1 || rep.Leases[0].Path != "fleet/c.thaw" {
		t.Errorf("under a lease: %+v", rep)
	}
	// Its bundle lands: the lease is over.
	time.Sleep(1100 * time.Millisecond) // object times are in seconds
	writeBundle(t, c, cap, data)
	if rep := gc(0, true); rep.Removed != 2 || len(rep.Leases) != 0 {
		t.Errorf("dry run after the landing: %+v", rep)
	}
	if rep := gc(0, false); rep.Removed != 2 || rep.Bundles != 2 || rep.Referenced != 3 {
		t.Errorf("sweep: %+v", rep)
	}
	// A pre-copy object stays while its bundle has not landed, and goes
	// (its own chunks with it) once it has.
	d := a.Sibling("d.thaw")
	rand.New(rand.NewSource(11)).Read(data[:1<<20])
	writeBundle(t, c, a.Sibling("d.thaw"+bundle.PrecopySuffix), data) // chunks 6 5 3
	if rep := gc(0, false); rep.Precopies != 0 || rep.Bundles != 3 || rep.Removed != 0 {
		t.Errorf("a pre-copy before its bundle: %+v", rep)
	}
	time.Sleep(1100 * time.Millisecond)
	writeBundle(t, c, d, data[1<<20:2<<20]) // chunk 5
	if rep := gc(0, false); rep.Precopies != 1 || rep.Bundles != 3 || rep.Removed != 1 {
		t.Errorf("a pre-copy after its bundle landed: %+v", rep)
	}
	if _, _, err := c.Get(ctx, a.Sibling("d.thaw"+bundle.PrecopySuffix)); err == nil {
		t.Error("the landed bundle's pre-copy is still there")
	}
	if have, _ := c.Chunks(ctx, b); len(have) != 3 {
		t.Errorf("after gc the bucket holds %d chunks, want b's 3", len(have))
	}
	// A bundle object that cannot be read stops everything.
	bad := filepath.Join(srv.Root, "images", "fleet", "bad.thaw")
	obj, _ := os.ReadFile(filepath.Join(srv.Root, "images", "fleet", "b.thaw"))
	os.WriteFile(bad, obj[:len(obj)/2], 0o600)
	if err := c.Remove(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s3.GC(ctx, c, "images", "fleet/", store.GCOptions{}); err == nil || !strings.Contains(err.Error(), "bad.thaw") {
		t.Errorf("an unreadable bundle object: %v", err)
	}
	if have, _ := c.Chunks(ctx, b); len(have) != 3 {
		t.Errorf("a failed gc removed chunks: %d left", len(have))
	}
}
