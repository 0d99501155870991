package store

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Paths come from any client: resolve must never give a name that leaves
// the tree.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"/", "/a/b.thaw", "/../etc/passwd", "/a/../../b", "/.thaw-upload-x", "//a//b/", "/a/./b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, err := resolve(p)
		if err != nil {
			return
		}
		if name == "" || strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
			t.Fatalf("resolve(%q) = %q", p, name)
		}
		for _, seg := range strings.Split(name, "/") {
			if strings.HasPrefix(seg, reservedPrefix) {
				t.Fatalf("resolve(%q) = %q: a reserved name", p, name)
			}
		}
	})
}

// Log bodies come from any agent: every record line is stamped, and no
// byte of the body can start a line of its own.
func FuzzFormatLog(f *testing.F) {
	f.Add([]byte("one\ntwo\r\n"))
	f.Add([]byte("\x00\xff\x1b[2J\n\n\n"))
	stamp := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	// The address is the server's own view of the connection
	// (RemoteAddr), not the client's bytes.
	f.Fuzz(func(t *testing.T, body []byte) {
		out := formatLog(stamp, "10.0.2.15:1234", body)
		if len(out) == 0 {
			return
		}
		if !bytes.HasSuffix(out, []byte("\n")) {
			t.Fatalf("record does not end a line: %q", out)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
			if !bytes.HasPrefix(line, []byte("2026-12-01T00:00:00")) {
				t.Fatalf("unstamped line %q of body %q", line, body)
			}
		}
	})
}
