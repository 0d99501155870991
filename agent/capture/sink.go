package capture

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
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
// socket connected before the freeze.
type httpSink struct {
	fd    int
	url   string
	stall time.Duration
}

func openHTTPSink(rawURL, token string, stall time.Duration) (*httpSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: capture streams over plain http only (nothing can do TLS while the machine is frozen); use a trusted network, or --to a file", rawURL)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
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
		return nil, fmt.Errorf("%s: port %q", rawURL, port)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	s := &httpSink{fd: fd, url: rawURL, stall: stall}
	tv := syscall.NsecToTimeval(int64(stall))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	sa := &syscall.SockaddrInet4{Port: pn}
	copy(sa.Addr[:], ip4)
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("connect to %s (%s:%d): %w", u.Host, ip4, pn, err)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "PUT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: thaw-capture\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n", u.RequestURI(), u.Host)
	if token != "" {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", token)
	}
	req.WriteString("\r\n")
	if err := s.send([]byte(req.String())); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *httpSink) send(p []byte) error {
	for len(p) > 0 {
		n, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			p = p[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return fmt.Errorf("upload to %s: no progress for %v: the server stalled", s.url, s.stall)
		default:
			return fmt.Errorf("upload to %s: %w", s.url, e)
		}
	}
	return nil
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
		n, err := syscall.Read(s.fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("upload to %s: no answer from the server: %w", s.url, err)
		}
		if n == 0 {
			break
		}
		resp = append(resp, buf[:n]...)
	}
	line, _, _ := bytes.Cut(resp, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[1], "2") {
		return fmt.Errorf("upload to %s: the server answered %q", s.url, line)
	}
	return nil
}

func (s *httpSink) Close() { syscall.Close(s.fd) }
