package capture

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/thawlinux/thaw/netfetch/store"
)

// sink receives the bundle after the freeze through raw system calls.
type sink interface {
	Write(p []byte) (int, error)
	Finish() error
	Close()
}

// fileSink writes to PATH.partial, opened before the freeze, readable by
// its owner only (it holds the server's RAM). Finish syncs it, renames it
// over PATH and syncs the directory, so that a failed capture never
// destroys the previous bundle at PATH.
type fileSink struct {
	fd       int
	path     string
	partial  string
	finished bool
}

func openFileSink(path string) (*fileSink, error) {
	partial := path + ".partial"
	// A new file of our own: a leftover partial (or a link planted in
	// its place) is removed, never opened.
	if err := syscall.Unlink(partial); err != nil && err != syscall.ENOENT {
		return nil, fmt.Errorf("remove %s: %w", partial, err)
	}
	fd, err := syscall.Open(partial, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", partial, err)
	}
	return &fileSink{fd: fd, path: path, partial: partial}, nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := syscall.Write(s.fd, p[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("write %s: %w", s.path, err)
		}
		n += k
	}
	return n, nil
}

func (s *fileSink) Finish() error {
	if err := syscall.Fsync(s.fd); err != nil {
		return fmt.Errorf("fsync %s: %w", s.partial, err)
	}
	if err := syscall.Rename(s.partial, s.path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", s.partial, s.path, err)
	}
	s.finished = true
	dir := "."
	if i := strings.LastIndexByte(s.path, '/'); i >= 0 {
		dir = s.path[:i+1]
	}
	dfd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer syscall.Close(dfd)
	if err := syscall.Fsync(dfd); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Close closes the file; a bundle that was not finished is removed, and
// the previous one at the path stays.
func (s *fileSink) Close() {
	syscall.Close(s.fd)
	if !s.finished {
		syscall.Unlink(s.partial)
	}
}

// httpSink streams an HTTP/1.1 PUT with chunked encoding over a raw TCP
// socket connected before the freeze; for https, TLS runs over that
// socket in this goroutine (crypto/tls starts no goroutine of its own
// once the handshake, done before the freeze, is over), so the token and
// the bundle cross the network encrypted even while the machine is
// frozen.
type httpSink struct {
	raw  *fdConn
	conn io.ReadWriter // raw, or TLS over raw
	tls  *tls.Conn
	url  string
}

// SinkOptions say how the capture reaches thaw serve.
type SinkOptions struct {
	Token string         // bearer token
	Roots *x509.CertPool // CAs for https; nil: the system's
	Stall time.Duration  // longest wait for the network
}

func openHTTPSink(rawURL string, o SinkOptions) (*httpSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	a, err := resolve(u)
	if err != nil {
		return nil, err
	}
	raw, tc, err := a.dial(o)
	if err != nil {
		return nil, err
	}
	s := &httpSink{raw: raw, conn: raw, url: rawURL}
	if tc != nil {
		s.tls, s.conn = tc, tc
	}
	var req strings.Builder
	fmt.Fprintf(&req, "PUT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: thaw-capture\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n", u.RequestURI(), u.Host)
	if o.Token != "" {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", o.Token)
	}
	req.WriteString("\r\n")
	if err := s.send([]byte(req.String())); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// endpoint is where a sink connects: resolved before the freeze, since
// name resolution may need threads that the freeze stops.
type endpoint struct {
	url        string
	scheme     string
	host       string // for TLS's server name
	hostHeader string
	addr       *syscall.SockaddrInet4
}

// resolve finds u's IPv4 address.
func resolve(u *url.URL) (*endpoint, error) {
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: not an http:// or https:// URL", u.Redacted())
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %s: %w", host, err)
	}
	var ip4 net.IP
	for _, ip := range ips {
		if ip4 = ip.To4(); ip4 != nil {
			break
		}
	}
	if ip4 == nil {
		return nil, fmt.Errorf("%s has no IPv4 address", host)
	}
	pn, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("%s: port %q", u.Redacted(), port)
	}
	sa := &syscall.SockaddrInet4{Port: pn}
	copy(sa.Addr[:], ip4)
	return &endpoint{url: u.Scheme + "://" + u.Host, scheme: u.Scheme, host: host, hostHeader: u.Host, addr: sa}, nil
}

// dial connects a blocking socket with o.Stall as its send and receive
// timeouts, and for https shakes hands over it: raw system calls only,
// so it works while the machine is frozen.
func (e *endpoint) dial(o SinkOptions) (*fdConn, *tls.Conn, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	raw := &fdConn{fd: fd, url: e.url, stall: o.Stall}
	tv := syscall.NsecToTimeval(int64(o.Stall))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	if err := syscall.Connect(fd, e.addr); err != nil {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("connect to %s (%d.%d.%d.%d:%d): %w", e.hostHeader, e.addr.Addr[0], e.addr.Addr[1], e.addr.Addr[2], e.addr.Addr[3], e.addr.Port, err)
	}
	raw.local, _ = syscall.Getsockname(fd)
	raw.remote = e.addr
	if e.scheme != "https" {
		return raw, nil, nil
	}
	tc := tls.Client(raw, &tls.Config{ServerName: e.host, RootCAs: o.Roots, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		syscall.Close(fd)
		return nil, nil, fmt.Errorf("TLS with %s: %w (give the store's CA with --ca-file)", e.hostHeader, err)
	}
	return raw, tc, nil
}

// TLS reports whether the upload is encrypted in transit.
func (s *httpSink) TLS() bool { return s.tls != nil }

func (s *httpSink) send(p []byte) error {
	_, err := s.conn.Write(p)
	return err
}

func (s *httpSink) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.send([]byte(strconv.FormatInt(int64(len(p)), 16) + "\r\n")); err != nil {
		return 0, err
	}
	if err := s.send(p); err != nil {
		return 0, err
	}
	if err := s.send([]byte("\r\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Finish ends the body and reads the server's answer.
func (s *httpSink) Finish() error {
	if err := s.send([]byte("0\r\n\r\n")); err != nil {
		return err
	}
	var resp []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(resp, []byte("\r\n\r\n")) && len(resp) < 16384 {
		n, err := s.conn.Read(buf)
		resp = append(resp, buf[:n]...)
		if err == io.EOF || n == 0 && err == nil {
			break
		}
		if err != nil {
			return fmt.Errorf("upload to %s: no answer from the server: %w", s.url, err)
		}
	}
	line, _, _ := bytes.Cut(resp, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[1], "2") {
		return fmt.Errorf("upload to %s: the server answered %q", s.url, line)
	}
	return nil
}

func (s *httpSink) Close() { syscall.Close(s.raw.fd) }

// fdConn is a net.Conn on a blocking socket through raw system calls: no
// netpoller, whose other threads are frozen with the machine. Deadlines
// are the socket's send and receive timeouts, set once.
type fdConn struct {
	fd            int
	url           string
	stall         time.Duration
	local, remote syscall.Sockaddr
}

func (c *fdConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			n += int(k)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return n, fmt.Errorf("upload to %s: no progress for %v: the server stalled", c.url, c.stall)
		default:
			return n, fmt.Errorf("upload to %s: %w", c.url, e)
		}
	}
	return n, nil
}

func (c *fdConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, fmt.Errorf("%s: no answer for %v", c.url, c.stall)
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *fdConn) Close() error                     { return syscall.Close(c.fd) }
func (c *fdConn) LocalAddr() net.Addr              { return sockAddr(c.local) }
func (c *fdConn) RemoteAddr() net.Addr             { return sockAddr(c.remote) }
func (c *fdConn) SetDeadline(time.Time) error      { return nil }
func (c *fdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fdConn) SetWriteDeadline(time.Time) error { return nil }

func sockAddr(sa syscall.Sockaddr) net.Addr {
	if a, ok := sa.(*syscall.SockaddrInet4); ok {
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &net.TCPAddr{}
}

// storeHas asks thaw serve at bundleURL which chunks it holds beside the
// bundle (before the freeze: the runtime's threads still run).
func storeHas(bundleURL, token string, roots *x509.CertPool) (map[string]bool, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return store.Have(ctx, &http.Client{Transport: tr}, bundleURL, token)
}
