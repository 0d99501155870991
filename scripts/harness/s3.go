package harness

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/thawlinux/thaw/netfetch/s3"
)

// S3Server is the S3 server the tests run: versitygw, a real S3 gateway
// (SigV4, ListObjectsV2, presigned URLs) serving a directory through its
// posix backend, each subdirectory a bucket, each object a file under it
// at its key. make s3server builds it from the Go module proxy.
type S3Server struct {
	Endpoint  string // http(s)://127.0.0.1:PORT
	Port      int
	Root      string
	AccessKey string
	SecretKey string
	cmd       *exec.Cmd
}

// Versitygw is the server's binary: $THAW_CACHE/bin/versitygw, else on
// PATH.
func Versitygw() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "bin", "versitygw")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no versitygw in %s/bin nor on PATH: run make s3server", cache)
}

// S3Options say how to start an S3Server.
type S3Options struct {
	Root      string // the directory served (made if missing)
	Port      int    // on 127.0.0.1; 0: a free one
	Cert, Key string // TLS, when given
	Log       io.Writer
	// KeepAlive keeps connections open between requests; without it the
	// server closes each after its answer (Connection: close).
	KeepAlive bool
	Buckets   []string // made as directories
}

// StartS3 starts versitygw. Objects are stored readable by their owner
// only.
func StartS3(o S3Options) (*S3Server, error) {
	bin, err := Versitygw()
	if err != nil {
		return nil, err
	}
	root, port, cert, key := o.Root, o.Port, o.Cert, o.Key
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	for _, b := range o.Buckets {
		if err := os.MkdirAll(filepath.Join(root, b), 0o700); err != nil {
			return nil, err
		}
	}
	s := &S3Server{Port: port, Root: root, AccessKey: "thawtest", SecretKey: "thaw-test-secret-key"}
	args := []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--quiet"}
	if o.KeepAlive {
		args = append(args, "--keep-alive")
	}
	scheme := "http"
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
		scheme = "https"
	}
	s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	args = append(args, "posix", "--file-perms", "0600", "--dir-perms", "0700", root)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = o.Log, o.Log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for range 100 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("versitygw on port %d did not listen in 10 s", port)
}

// StartS3For starts a server for a test, over a temporary directory when
// o.Root is empty, stopped when the test ends, and a client of it.
func StartS3For(t testing.TB, o S3Options) (*S3Server, *s3.Client) {
	t.Helper()
	if o.Root == "" {
		o.Root = t.TempDir()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	srv, err := StartS3(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// Client is a client of the server with its root key.
func (s *S3Server) Client() (*s3.Client, error) {
	return s3.New(s3.Config{Endpoint: s.Endpoint, Region: "us-east-1", AccessKey: s.AccessKey, SecretKey: s.SecretKey})
}

// Env is the environment that points thaw at the server.
func (s *S3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_REGION=us-east-1"}
}

// Stop ends the server.
func (s *S3Server) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}
