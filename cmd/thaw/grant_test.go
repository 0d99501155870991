package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/netfetch/store"
)

// TestGrant: thaw grant against a real store; its refusals write no
// token file.
func TestGrant(t *testing.T) {
	dir := t.TempDir()
	st, err := store.New(t.TempDir(), store.Options{Token: "w-tok", ReadToken: "r-tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st)
	defer srv.Close()
	wtok := filepath.Join(dir, "w")
	os.WriteFile(wtok, []byte("w-tok\n"), 0o600)
	rtok := filepath.Join(dir, "r")
	os.WriteFile(rtok, []byte("r-tok\n"), 0o600)
	out := filepath.Join(dir, "grant")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no url", []string{"--token-file", wtok}, "give --token-file and the bundle's URL"},
		{"no token", []string{srv.URL + "/a.thaw"}, "give --token-file"},
		{"ttl", []string{"--token-file", wtok, "--ttl", "900h", srv.URL + "/a.thaw"}, "--ttl 900h0m0s"},
		{"read token", []string{"--token-file", rtok, srv.URL + "/a.thaw"}, "401"},
		{"no name", []string{"--token-file", wtok, srv.URL + "/"}, "give the bundle's URL"},
		{"bad CA file", []string{"--token-file", wtok, "--ca-file", wtok, srv.URL + "/a.thaw"}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, append([]string{"grant", "--out", out}, tc.args...)...)
			if err == nil || !strings.Contains(got, tc.want) {
				t.Fatalf("err %v, want %q:\n%s", err, tc.want, got)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatal("a token file was written despite the refusal")
			}
		})
	}
	got, err := run(t, "grant", "--token-file", wtok, "--ttl", "1h", "--out", out, srv.URL+"/fleet/web1.thaw")
	if err != nil || !strings.Contains(got, "one upload of /fleet/web1.thaw until") {
		t.Fatalf("%v\n%s", err, got)
	}
	b, err := os.ReadFile(out)
	fi, _ := os.Stat(out)
	if err != nil || !strings.HasPrefix(string(b), "grant-") || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %q %v %v", b, fi.Mode(), err)
	}
	if st.Grants() != 1 {
		t.Fatalf("%d grants", st.Grants())
	}
}
