package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/thawlinux/thaw/netfetch/store"
)

const grantHelp = `
Asks thaw serve for a one-use upload token: it may store the one bundle
URL names, once, before --ttl runs out, and nothing else (no reads, no
other names). The store keeps only its hash and revokes it when its upload
starts.

Give it to the source machine instead of the store's write token:

  thaw grant --token-file /etc/thaw/token --out web1.grant \
      https://store.example:8443/web1.thaw
  (copy web1.grant to web1, then on web1:)
  thaw capture --to https://store.example:8443/web1.thaw \
      --token-file web1.grant --key … --recipient …

Over plain http a capture's token crosses the network in clear (the
bundle itself is encrypted): a one-use token that someone sniffs is
already spent, and never worked for another name.
`

func runGrant(args []string) error {
	fs := newFlags("grant", "--token-file FILE [--ttl D] [--out FILE] [--ca-file FILE] URL", grantHelp)
	tokenFile := fs.String("token-file", "", "file holding the store's write token (thaw serve --token-file)")
	ttl := fs.Duration("ttl", store.DefaultGrantTTL, "how long the token stays usable (at most 168h)")
	out := fs.String("out", "", "write the token to this file (mode 0600) instead of standard output")
	caFile := fs.String("ca-file", "", "PEM file of the CAs that sign thaw serve's certificate, for https:// (default: the system's)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *tokenFile == "" {
		fs.Usage()
		return &exitError{2, errors.New("give --token-file and the bundle's URL")}
	}
	if *ttl <= 0 || *ttl > store.MaxGrantTTL {
		return &exitError{2, fmt.Errorf("--ttl %v: give a duration up to %v", *ttl, store.MaxGrantTTL)}
	}
	token, roots, err := storeAccess(*tokenFile, *caFile)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := store.RequestGrant(ctx, &http.Client{Transport: tr}, pos[0], token, *ttl)
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Println(g.Token)
	} else if err := os.WriteFile(*out, []byte(g.Token+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "thaw grant: one upload of %s until %s\n", g.Path, g.Expires.Local().Format(time.RFC3339))
	return nil
}
