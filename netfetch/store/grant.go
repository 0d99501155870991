package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// grantsFile keeps the one-use upload tokens across restarts: their
// SHA-256, never the tokens themselves.
const grantsFile = ".thaw-grants.json"

// GrantPrefix starts the URL paths that issue one-use upload tokens:
// POST /grant/NAME.
const GrantPrefix = "/grant/"

// Grant limits.
const (
	DefaultGrantTTL = 24 * time.Hour
	MaxGrantTTL     = 7 * 24 * time.Hour
)

// grant lets one PUT of one path, once, until it expires.
type grant struct {
	Hash    string    `json:"sha256"` // of the token, hex
	Path    string    `json:"path"`   // the name the PUT must store, as resolve gives it
	Expires time.Time `json:"expires"`
}

// Grant is the answer to POST /grant/NAME.
type Grant struct {
	Token   string    `json:"token"`
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

// loadGrants reads the grants kept by a previous run, dropping expired
// ones. A damaged file leaves no grant: the tokens it held no longer work.
func (s *Store) loadGrants() {
	b, err := s.root.ReadFile(grantsFile)
	if err != nil {
		return
	}
	var gs []grant
	if json.Unmarshal(b, &gs) != nil {
		s.opt.Logf("%s does not parse: the one-use tokens it held are void", grantsFile)
		return
	}
	now := time.Now()
	for _, g := range gs {
		if g.Expires.After(now) && len(g.Hash) == 64 {
			s.grants = append(s.grants, g)
		}
	}
}

// saveGrants writes the grants, readable by the store's owner only, held
// under grantMu.
func (s *Store) saveGrants() error {
	b, err := json.Marshal(s.grants)
	if err != nil {
		return err
	}
	tmp := grantsFile + ".new"
	if err := s.root.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return s.root.Rename(tmp, grantsFile)
}

// postGrant issues a one-use token that may PUT the path after /grant/,
// once, for ?ttl= (a Go duration; default a day, at most a week). It needs
// the write token.
func (s *Store) postGrant(w http.ResponseWriter, r *http.Request) {
	if s.opt.Token == "" {
		fail(w, http.StatusForbidden, "this server is read-only: it was started without --token-file, so it grants no uploads")
		return
	}
	if !s.authorized(r, roleWrite) {
		unauthorized(w, r, roleWrite)
		return
	}
	p := "/" + strings.TrimPrefix(r.URL.Path, GrantPrefix)
	name, err := resolve(p)
	if err != nil {
		pathFail(w, p, err)
		return
	}
	if name == "." || strings.HasSuffix(p, "/") || logPath(name) {
		fail(w, http.StatusBadRequest, "POST /grant/NAME names the file the token may store, such as /grant/web1.thaw, not %s", p)
		return
	}
	ttl := DefaultGrantTTL
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxGrantTTL {
			fail(w, http.StatusBadRequest, "ttl=%s: give a duration up to %v, such as ttl=2h", v, MaxGrantTTL)
			return
		}
		ttl = d
	}
	var raw [32]byte
	rand.Read(raw[:])
	tok := "grant-" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(tok))
	g := grant{Hash: hex.EncodeToString(sum[:]), Path: name, Expires: time.Now().Add(ttl).UTC().Truncate(time.Second)}
	s.grantMu.Lock()
	s.dropExpired()
	s.grants = append(s.grants, g)
	err = s.saveGrants()
	s.grantMu.Unlock()
	if err != nil {
		fsFail(w, p, fmt.Errorf("keeping the grant: %w", err))
		return
	}
	s.opt.Logf("granted one upload of /%s until %s", name, g.Expires.Format(time.RFC3339))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(Grant{Token: tok, Path: "/" + name, Expires: g.Expires})
}

// hasGrant reports whether r carries a live one-use token for name.
func (s *Store) hasGrant(r *http.Request, name string) bool {
	s.grantMu.Lock()
	defer s.grantMu.Unlock()
	return s.findGrant(r, name) >= 0
}

// useGrant revokes r's one-use token for name, and reports whether it was
// still there: a token stores one bundle, and a sniffed one is worthless
// once its upload has started.
func (s *Store) useGrant(r *http.Request, name string) bool {
	s.grantMu.Lock()
	defer s.grantMu.Unlock()
	i := s.findGrant(r, name)
	if i < 0 {
		return false
	}
	s.grants = append(s.grants[:i], s.grants[i+1:]...)
	if err := s.saveGrants(); err != nil {
		s.opt.Logf("saving %s: %v", grantsFile, err)
	}
	s.opt.Logf("one-use token for /%s used and revoked", name)
	return true
}

// findGrant is the index of r's live grant for name, or -1; held under
// grantMu.
func (s *Store) findGrant(r *http.Request, name string) int {
	sum, ok := bearerSum(r)
	if !ok {
		return -1
	}
	want := hex.EncodeToString(sum[:])
	s.dropExpired()
	found := -1
	for i, g := range s.grants {
		if subtle.ConstantTimeCompare([]byte(g.Hash), []byte(want)) == 1 && g.Path == name {
			found = i
		}
	}
	return found
}

// dropExpired forgets expired grants; held under grantMu.
func (s *Store) dropExpired() {
	now := time.Now()
	kept := s.grants[:0]
	for _, g := range s.grants {
		if g.Expires.After(now) {
			kept = append(kept, g)
		}
	}
	s.grants = kept
}

// Grants is how many one-use tokens are outstanding.
func (s *Store) Grants() int {
	s.grantMu.Lock()
	defer s.grantMu.Unlock()
	s.dropExpired()
	return len(s.grants)
}

// RequestGrant asks the store that serves bundleURL (http(s)://HOST/NAME)
// for a one-use token that may upload NAME once, within ttl (0: the
// store's default), with its write token.
func RequestGrant(ctx context.Context, client *http.Client, bundleURL, writeToken string, ttl time.Duration) (*Grant, error) {
	u, err := url.Parse(bundleURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("%s: give the bundle's URL, http(s)://HOST:PORT/NAME", bundleURL)
	}
	g := *u
	g.Path = GrantPrefix + strings.TrimPrefix(u.Path, "/")
	g.RawPath, g.RawQuery, g.Fragment = "", "", ""
	if ttl > 0 {
		g.RawQuery = "ttl=" + url.QueryEscape(ttl.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+writeToken)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("POST %s: %s: %s", g.Redacted(), resp.Status, strings.TrimSpace(string(body)))
	}
	var out Grant
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		return nil, fmt.Errorf("POST %s: the answer is not a grant: %q", g.Redacted(), body)
	}
	return &out, nil
}
