package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/thawlinux/thaw/boot/pxe"
	"github.com/thawlinux/thaw/netfetch/store"
)

const serveHelp = `
Serves the files under DIR over HTTP, or HTTPS with --tls-cert and
--tls-key, to thaw's restore agents and to people. A bundle holds a
server's whole RAM, so nothing is served without a token:

  GET  /PATH          a file; needs the read token (or the write token),
                      except under a --public prefix. Range requests, a
                      strong ETag (inode, size and mtime), If-Range and
                      If-None-Match are honoured, so broken downloads
                      resume (curl -C -, curl -r A-B)
  GET  /  or /DIR/    a listing of name, size and mtime (JSON with
                      -H 'Accept: application/json' or ?format=json);
                      needs the read token unless the directory is public
  PUT  /PATH          stores a file; needs the write token (--token-file),
                      or a one-use token for PATH (POST /grant/PATH).
                      Directories on the way are created. The file
                      appears whole or not at all: the body goes to
                      DIR/.../.thaw-upload-* first (mode 0600), is synced,
                      then renamed over PATH; an upload that sends
                      nothing for 10 minutes is dropped (thaw capture
                      pauses while the frozen machine makes its image)
  POST /grant/PATH    issues a one-use token that may PUT PATH once
                      (?ttl=2h; default 24h, at most 168h); needs the
                      write token; JSON {token, path, expires}. thaw grant
                      asks for one. The store keeps its hash in
                      DIR/.thaw-grants.json and revokes it when its upload
                      starts
  POST /log/NAME      appends agent log lines to DIR/logs/NAME.log, each
                      stamped with the UTC time and the sender's address;
                      needs the log, read or write token. One machine's
                      log holds at most 16 MiB and all logs 512 MiB:
                      past that, 413

The tokens are the contents of their files (make one with
"head -c 32 /dev/urandom | base64 > /etc/thaw/read-token; chmod 600
/etc/thaw/read-token"). Clients send one as "Authorization: Bearer TOKEN":

  --token-file        the write token: thaw capture and thaw export. It
                      reads and posts logs too. Without it the store takes
                      no uploads
  --read-token-file   the read token: the restore agent (thaw.token=),
                      thaw restore, thaw plan, thaw inspect --token-file
  --log-token-file    posts logs only
  --public PREFIX     a URL path prefix anyone may read, such as /boot/
                      for the agent's kernel and initramfs fetched by
                      iPXE; repeatable. --public / opens the whole store,
                      for a lab
  --boot DIR          serves the PXE tree that thaw media pxe wrote under
                      /boot/, to anyone, read-only (iPXE sends no token):
                      one process serves boot files, bundles and logs

A store with no token and nothing public refuses to start: nobody could
read it.

Upload a bundle, check it, read part of it, list the store:

  curl -fT server1.thaw -H "Authorization: Bearer $(cat /etc/thaw/token)" \
      http://HOST:8080/bundles/server1.thaw
  curl -fI -H "Authorization: Bearer $(cat /etc/thaw/read-token)" \
      http://HOST:8080/bundles/server1.thaw
  curl -f -H "Authorization: Bearer $(cat /etc/thaw/read-token)" http://HOST:8080/

A PUT answers "stored /PATH: N bytes, sha256 HEX" (the SHA-256 also in the
X-Thaw-Sha256 header); compare it with sha256sum of the file sent.

Every request is logged on standard error: client address, method, path,
status, bytes in and out, duration. Temporary files of uploads that a
crash interrupted are removed at start. A client gets 30 s to send its
request headers, and a kept-alive connection is closed after 2 minutes
idle. SIGINT (Ctrl-C) or SIGTERM stop the server cleanly: running
transfers get 30 s to finish (a second Ctrl-C stops at once).
`

func runServe(args []string) error {
	fs := newFlags("serve", "--dir DIR [--listen ADDR] [--token-file FILE] [--read-token-file FILE] [--log-token-file FILE] [--public PREFIX …] [--boot DIR] [--tls-cert FILE --tls-key FILE]", serveHelp)
	dir := fs.String("dir", "", "the directory to serve (required)")
	listen := fs.String("listen", ":8080", "address and port to listen on, e.g. :8080 or 10.0.0.5:8443")
	tokenFile := fs.String("token-file", "", "file holding the write token (PUT; it also reads and posts logs); without it the store takes no uploads")
	readTokenFile := fs.String("read-token-file", "", "file holding the read token (GET, HEAD, listings, POST /log): the agents' thaw.token=")
	logTokenFile := fs.String("log-token-file", "", "file holding a token that only posts logs")
	var public []string
	fs.Func("public", "a URL path `PREFIX` anyone may read without a token (e.g. /boot/); repeatable; / opens the whole store", func(v string) error {
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q: a URL path starts with /", v)
		}
		public = append(public, v)
		return nil
	})
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) for HTTPS")
	tlsKey := fs.String("tls-key", "", "PEM private key for HTTPS")
	bootDir := fs.String("boot", "", "a PXE tree (thaw media pxe --out DIR) to serve under /boot/, public and read-only")
	maxSize := fs.String("max-size", "4T", "largest upload taken, e.g. 200G (K, M, G, T are powers of 1024); 0: no limit")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fs.Usage()
		return &exitError{2, fmt.Errorf(format, a...)}
	}
	switch {
	case len(pos) != 0:
		return usageErr("unexpected arguments %q: the directory goes in --dir", pos)
	case *dir == "":
		return usageErr("--dir is required")
	case (*tlsCert == "") != (*tlsKey == ""):
		return usageErr("--tls-cert and --tls-key go together")
	}
	limit, err := parseSize(*maxSize)
	if err != nil {
		return usageErr("--max-size: %v", err)
	}
	if st, err := os.Stat(*dir); err != nil {
		return fmt.Errorf("--dir: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("--dir %s is not a directory", *dir)
	}

	var token, readTok, logTok string
	for _, t := range []struct {
		flag, path string
		tok        *string
	}{{"--read-token-file", *readTokenFile, &readTok}, {"--log-token-file", *logTokenFile, &logTok}} {
		if t.path != "" {
			if *t.tok, err = readServeToken(t.flag, t.path); err != nil {
				return err
			}
		}
	}
	if *tokenFile == "" && readTok == "" && len(public) == 0 {
		return usageErr("nobody could read this store: give --read-token-file (the agents' thaw.token=), or --public / for a lab store anyone may read")
	}
	if *tokenFile != "" {
		if token, err = readServeToken("--token-file", *tokenFile); err != nil {
			return err
		}
		f, err := os.CreateTemp(*dir, ".thaw-upload-probe-")
		if err != nil {
			return fmt.Errorf("uploads need a writable --dir: %w", err)
		}
		f.Close()
		os.Remove(f.Name())
	}

	var tlsConf *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert %s / --tls-key %s: %w", *tlsCert, *tlsKey, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	logger := log.New(os.Stderr, "", log.LstdFlags)
	st, err := store.New(*dir, store.Options{Token: token, ReadToken: readTok, LogToken: logTok, Public: public, MaxSize: limit, Logf: logger.Printf})
	if err != nil {
		return err
	}
	defer st.Close()
	var handler http.Handler = st
	if *bootDir != "" {
		if _, err := os.Stat(filepath.Join(*bootDir, pxe.ScriptName)); err != nil {
			return fmt.Errorf("--boot %s: %w: write the tree with thaw media pxe --out %s", *bootDir, err, *bootDir)
		}
		boot, err := store.New(*bootDir, store.Options{Public: []string{"/"}, Logf: logger.Printf})
		if err != nil {
			return fmt.Errorf("--boot: %w", err)
		}
		defer boot.Close()
		mux := http.NewServeMux()
		mux.Handle("/boot/", http.StripPrefix("/boot", boot))
		mux.Handle("/", st)
		handler = mux
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	scheme := "http"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	mode := "read-write: PUT needs the token from " + *tokenFile
	if token == "" {
		mode = "READ-ONLY (no --token-file): uploads are refused"
	}
	fmt.Printf("thaw serve: serving %s, %s\n", *dir, mode)
	switch {
	case slices.Contains(public, "/"):
		fmt.Println("  READABLE BY ANYONE (--public /): a lab store")
	case readTok != "":
		fmt.Printf("  reads need the token from %s (or the write token)\n", *readTokenFile)
	default:
		fmt.Println("  reads need the write token")
	}
	for _, p := range public {
		if p != "/" {
			fmt.Printf("  %s… is public\n", p)
		}
	}
	if limit > 0 {
		fmt.Printf("  uploads up to %d bytes\n", limit)
	}
	if *bootDir != "" {
		fmt.Printf("  /boot/… is the PXE tree in %s, readable by anyone\n", *bootDir)
	}
	fmt.Printf("  agent logs go to %s\n", strings.TrimSuffix(*dir, "/")+"/logs/NAME.log")
	for _, u := range listenURLs(scheme, ln.Addr().(*net.TCPAddr)) {
		fmt.Printf("  listening on %s\n", u)
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          logger,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stop()
	fmt.Println("thaw serve: stopping; waiting up to 30 s for running transfers")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		fmt.Println("thaw serve: transfers still running were cut")
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Println("thaw serve: stopped")
	return nil
}

// readServeToken reads a token file as the clients do (the whole file,
// space around it trimmed) and checks that it fits an HTTP header.
func readServeToken(flag, path string) (string, error) {
	tok, err := readToken(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if tok == "" {
		return "", fmt.Errorf("%s %s is empty", flag, path)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%s %s: the token must be one word of printable ASCII", flag, path)
		}
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(os.Stderr, "thaw serve: warning: %s is readable by other users (mode %#o); chmod 600 it\n", path, st.Mode().Perm())
	}
	return tok, nil
}

// listenURLs lists the addresses clients can use: every address of this
// machine when the server listens on all of them.
func listenURLs(scheme string, a *net.TCPAddr) []string {
	port := strconv.Itoa(a.Port)
	if !a.IP.IsUnspecified() {
		return []string{scheme + "://" + net.JoinHostPort(a.IP.String(), port) + "/"}
	}
	var urls, loop []string
	addrs, _ := net.InterfaceAddrs()
	for _, ad := range addrs {
		ipn, ok := ad.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() || (a.IP.To4() != nil && ipn.IP.To4() == nil) {
			continue
		}
		u := scheme + "://" + net.JoinHostPort(ipn.IP.String(), port) + "/"
		if ipn.IP.IsLoopback() {
			loop = append(loop, u)
		} else {
			urls = append(urls, u)
		}
	}
	urls = append(urls, loop...)
	if len(urls) == 0 {
		urls = []string{scheme + "://localhost:" + port + "/"}
	}
	return urls
}

// parseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024, "B" or "iB" may follow).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	shift := 0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			shift = 10 * (i + 1)
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("%q is not a size such as 500M or 200G", s)
	}
	return n << shift, nil
}
