package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needCurl finds the curl client. Without one the test is skipped, unless
// CI is set: then it fails.
func needCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("curl is needed for the tests against a real HTTP client (CI is set): %v", err)
		}
		t.Skipf("curl is not installed (%v): skipping the test against a real HTTP client (install curl, or set CI=1 to make this a failure)", err)
	}
	return p
}

func curl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(needCurl(t), append([]string{"-sS"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func TestCurlRanges(t *testing.T) {
	needCurl(t)
	ts := newStore(t, Options{})
	data := randBytes(100000, 6)
	ts.write(t, "a.bundle", data)
	u := ts.url + "/a.bundle"
	cases := []struct {
		rng      string
		from, to int
	}{
		{"10-19", 10, 20},
		{"99990-", 99990, len(data)},
		{"-5", len(data) - 5, len(data)},
		{"0-99999", 0, len(data)},
	}
	for _, c := range cases {
		t.Run(c.rng, func(t *testing.T) {
			if got := curl(t, nil, "-f", "-r", c.rng, u); !bytes.Equal(got, data[c.from:c.to]) {
				t.Fatalf("curl -r %s: %d bytes, want data[%d:%d]", c.rng, len(got), c.from, c.to)
			}
		})
	}
	if code := curl(t, nil, "-o", "/dev/null", "-w", "%{http_code}", "-r", "100000-", u); string(code) != "416" {
		t.Fatalf("beyond the end: %s", code)
	}
	head := string(curl(t, nil, "-f", "-I", u))
	if !strings.Contains(head, "Accept-Ranges: bytes") || !strings.Contains(head, `Etag: "`) {
		t.Fatalf("curl -I:\n%s", head)
	}
	// curl -C - resumes a partial download with a Range request.
	out := filepath.Join(t.TempDir(), "partial")
	os.WriteFile(out, data[:30000], 0o644)
	curl(t, nil, "-f", "-C", "-", "-o", out, u)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatalf("resumed download: %d bytes", len(got))
	}
}

func TestCurlUpload(t *testing.T) {
	needCurl(t)
	ts := newStore(t, Options{Token: token})
	data := randBytes(3<<20+1, 7)
	sum := sha256.Sum256(data)
	file := filepath.Join(t.TempDir(), "up.bundle")
	os.WriteFile(file, data, 0o644)
	auth := "Authorization: Bearer " + token

	// -T FILE: Content-Length (and Expect: 100-continue).
	out := curl(t, nil, "-f", "-T", file, "-H", auth, ts.url+"/up/c.bundle")
	if want := "stored /up/c.bundle: 3145729 bytes, sha256 " + hex.EncodeToString(sum[:]) + "\n"; string(out) != want {
		t.Fatalf("curl -T said %q", out)
	}
	if got, _ := os.ReadFile(filepath.Join(ts.dir, "up/c.bundle")); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes", len(got))
	}
	// -T - : stdin, chunked.
	curl(t, data[:70000], "-f", "-T", "-", "-H", auth, ts.url+"/up/stdin.bundle")
	if got, _ := os.ReadFile(filepath.Join(ts.dir, "up/stdin.bundle")); !bytes.Equal(got, data[:70000]) {
		t.Fatalf("stored %d bytes from stdin", len(got))
	}
	ts.log.waitFor(t, `PUT /up/stdin\.bundle 201 in=70000 `)

	for _, c := range []struct{ name, hdr, want string }{
		{"no-token", "X-None: 1", "401"},
		{"wrong-token", "Authorization: Bearer nope", "401"},
		{"right-token", auth, "200"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code := curl(t, nil, "-o", "/dev/null", "-w", "%{http_code}", "-T", file, "-H", c.hdr, ts.url+"/up/c.bundle"); string(code) != c.want {
				t.Fatalf("HTTP %s, want %s", code, c.want)
			}
		})
	}

	var ls Listing
	if err := json.Unmarshal(curl(t, nil, "-f", "-H", "Accept: application/json", ts.url+"/up/"), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.Entries) != 2 || ls.Entries[0].Name != "c.bundle" || ls.Entries[0].Size != int64(len(data)) {
		t.Fatalf("listing %+v", ls)
	}

	curl(t, []byte("agent says hi\n"), "-f", "--data-binary", "@-", "-H", auth, ts.url+"/log/curl")
	if got, _ := os.ReadFile(filepath.Join(ts.dir, "logs/curl.log")); !strings.HasSuffix(string(got), " agent says hi\n") {
		t.Fatalf("log: %q", got)
	}
}
