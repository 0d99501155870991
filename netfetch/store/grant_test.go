package store

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGrant: a one-use token stores one file under its one name, once;
// it is kept across a restart as a hash, never listed or served, and an
// expired or foreign one gets 401.
func TestGrant(t *testing.T) {
	ts := newStore(t, Options{Token: token, ReadToken: "read-tok"})
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	issue := func(t *testing.T, path, tok string) (*http.Response, Grant) {
		t.Helper()
		resp, body := do(t, "POST", ts.url+path, nil, auth(tok)...)
		var g Grant
		if resp.StatusCode == http.StatusCreated {
			if err := json.Unmarshal(body, &g); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
		}
		return resp, g
	}

	for _, tc := range []struct {
		name, path, tok string
		want            int
	}{
		{"no token", "/grant/web1.thaw", "", 401},
		{"read token", "/grant/web1.thaw", "read-tok", 401},
		{"no name", "/grant/", token, 400},
		{"dotdot", "/grant/../x", token, 400},
		{"reserved", "/grant/.thaw-grants.json", token, 404},
		{"logs", "/grant/logs/x.log", token, 400},
		{"log", "/grant/log/x", token, 400},
		{"bad ttl", "/grant/web1.thaw?ttl=forever", token, 400},
		{"ttl too long", "/grant/web1.thaw?ttl=1000h", token, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, _ := issue(t, tc.path, tc.tok); resp.StatusCode != tc.want {
				t.Fatalf("POST %s: %d, want %d", tc.path, resp.StatusCode, tc.want)
			}
		})
	}
	if resp, _ := do(t, "GET", ts.url+"/grant/web1.thaw", nil, auth(token)...); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /grant/: %d", resp.StatusCode)
	}

	resp, g := issue(t, "/grant/fleet/web1.thaw?ttl=2h", token)
	if resp.StatusCode != http.StatusCreated || g.Path != "/fleet/web1.thaw" || !strings.HasPrefix(g.Token, "grant-") ||
		time.Until(g.Expires) > 2*time.Hour || time.Until(g.Expires) < 119*time.Minute {
		t.Fatalf("grant: %d %+v", resp.StatusCode, g)
	}
	// Another name, the token as a reader: refused.
	if resp, _ := do(t, "PUT", ts.url+"/fleet/web2.thaw", strings.NewReader("x"), auth(g.Token)...); resp.StatusCode != 401 {
		t.Fatalf("PUT of another name: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", ts.url+"/", nil, auth(g.Token)...); resp.StatusCode != 401 {
		t.Fatalf("GET with a grant: %d", resp.StatusCode)
	}
	// Kept across a restart, as a hash only.
	kept, err := os.ReadFile(filepath.Join(ts.dir, grantsFile))
	if err != nil || strings.Contains(string(kept), g.Token) || !strings.Contains(string(kept), "fleet/web1.thaw") {
		t.Fatalf("%s: %v %s", grantsFile, err, kept)
	}
	if fi, _ := os.Stat(filepath.Join(ts.dir, grantsFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s is %v", grantsFile, fi.Mode())
	}
	ts2 := newStoreIn(t, ts.dir, Options{Token: token, ReadToken: "read-tok"})
	if ts2.Grants() != 1 {
		t.Fatalf("after a restart: %d grants", ts2.Grants())
	}
	// Not listed, not served.
	_, list := do(t, "GET", ts2.url+"/", nil, auth("read-tok")...)
	if strings.Contains(string(list), grantsFile) {
		t.Fatalf("listed: %s", list)
	}
	if resp, _ := do(t, "GET", ts2.url+"/"+grantsFile, nil, auth(token)...); resp.StatusCode != 404 {
		t.Fatalf("GET %s: %d", grantsFile, resp.StatusCode)
	}
	// One upload, then no more.
	if resp, body := do(t, "PUT", ts2.url+"/fleet/web1.thaw", strings.NewReader("bundle one"), auth(g.Token)...); resp.StatusCode != 201 {
		t.Fatalf("PUT with the grant: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "PUT", ts2.url+"/fleet/web1.thaw", strings.NewReader("bundle two"), auth(g.Token)...); resp.StatusCode != 401 {
		t.Fatalf("second PUT with the grant: %d", resp.StatusCode)
	}
	if b, _ := os.ReadFile(filepath.Join(ts.dir, "fleet", "web1.thaw")); string(b) != "bundle one" {
		t.Fatalf("stored %q", b)
	}
	ts2.log.waitFor(t, `one-use token for /fleet/web1.thaw used and revoked`)
	if ts2.Grants() != 0 {
		t.Fatalf("%d grants left", ts2.Grants())
	}
	// Expired.
	_, g = issue(t, "/grant/x.thaw?ttl=1s", token)
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := do(t, "PUT", ts.url+"/x.thaw", strings.NewReader("late"), auth(g.Token)...); resp.StatusCode != 401 {
		t.Fatalf("PUT with an expired grant: %d", resp.StatusCode)
	}
}

// TestRequestGrant: the client side, over TLS, then the upload it allows.
func TestRequestGrant(t *testing.T) {
	s, err := New(t.TempDir(), Options{Token: token, ReadToken: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewTLSServer(s)
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct{ name, url, tok, want string }{
		{"no name", srv.URL + "/", token, "give the bundle's URL"},
		{"ftp", "ftp://h/x.thaw", token, "give the bundle's URL"},
		{"wrong token", srv.URL + "/a.thaw", "nope", "401"},
	} {
		if _, err := RequestGrant(ctx, srv.Client(), tc.url, tc.tok, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	g, err := RequestGrant(ctx, srv.Client(), srv.URL+"/a/b.thaw", token, time.Hour)
	if err != nil || g.Path != "/a/b.thaw" {
		t.Fatalf("%+v %v", g, err)
	}
	req, _ := http.NewRequest("PUT", srv.URL+"/a/b.thaw", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+g.Token)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
}
