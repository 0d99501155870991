package capture

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/s3"
)

// s3Sink stores a version 2 bundle in a bucket while the machine is
// frozen: each record (bundle.StoreOptions.Records) is one PUT signed with
// SigV4, the chunks as objects of their own and the bundle object last,
// on a connection kept open between requests (and made again, by raw
// system calls, when the store closes it). The name was resolved before
// the freeze.
type s3Sink struct {
	c    *s3.Client
	o    s3.Object
	ep   *endpoint
	so   SinkOptions
	raw  *fdConn
	conn io.ReadWriter
	br   *bufio.Reader
	tls  bool
	used bool // the connection carried a request already
	hdr  strings.Builder
}

// openS3Sink resolves the store and connects to it (with TLS for https),
// so that what can be checked is checked before the freeze.
func openS3Sink(c *s3.Client, o s3.Object, so SinkOptions) (*s3Sink, error) {
	ep, err := resolve(c.Endpoint())
	if err != nil {
		return nil, err
	}
	s := &s3Sink{c: c, o: o, ep: ep, so: so, tls: ep.scheme == "https"}
	return s, s.connect()
}

func (s *s3Sink) connect() error {
	raw, tc, err := s.ep.dial(s.so)
	if err != nil {
		return err
	}
	s.raw, s.conn, s.used = raw, raw, false
	if tc != nil {
		s.conn = tc
	}
	s.br = bufio.NewReaderSize(s.conn, 4096)
	return nil
}

func (s *s3Sink) drop() {
	if s.raw != nil {
		s.raw.Close()
		s.raw = nil
	}
}

// TLS reports whether the upload is encrypted in transit.
func (s *s3Sink) TLS() bool { return s.tls }

// Write is not used: the Writer hands this sink records.
func (s *s3Sink) Write([]byte) (int, error) {
	return 0, errors.New("s3: the bundle goes as records, not a stream")
}

// Finish has nothing left to do: the bundle object was the last record,
// stored once every chunk was.
func (s *s3Sink) Finish() error { return nil }

func (s *s3Sink) Close() { s.drop() }

// Record stores a chunk as o's chunks/ab/SUM, or the bundle object as o.
func (s *s3Sink) Record(kind byte, sum [32]byte, b []byte) error {
	hs := hex.EncodeToString(sum[:])
	o := s.o
	if kind == bundle.RecordChunk {
		o = s.o.Chunk(hs)
	}
	err := s.put(o, hs, b)
	if err != nil && s.used {
		// The store may close a kept connection at any time: once
		// more on a new one (a PUT can be repeated).
		s.drop()
		err = s.put(o, hs, b)
	}
	if err != nil {
		s.drop()
	}
	return err
}

func (s *s3Sink) put(o s3.Object, sum string, b []byte) error {
	if s.raw == nil {
		if err := s.connect(); err != nil {
			return err
		}
	}
	req, err := s.c.SignPut(o, sum, int64(len(b)))
	if err != nil {
		return err
	}
	s.hdr.Reset()
	fmt.Fprintf(&s.hdr, "PUT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: thaw-capture\r\nContent-Length: %d\r\n", req.URL.RequestURI(), req.Host, len(b))
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&s.hdr, "%s: %s\r\n", k, v)
		}
	}
	s.hdr.WriteString("\r\n")
	used := s.used
	s.used = true
	if _, err := io.WriteString(s.conn, s.hdr.String()); err != nil {
		return fmt.Errorf("put %s: %w", o, err)
	}
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("put %s: %w", o, err)
	}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		if used && errors.Is(err, io.EOF) {
			err = fmt.Errorf("the store closed the connection: %w", err)
		}
		return fmt.Errorf("put %s: no answer: %w", o, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.Close {
		s.drop()
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("put %s: the store answered %s: %s", o, resp.Status, s3Message(body))
	}
	return nil
}

// s3Message is the Code and Message of an S3 error body.
func s3Message(body []byte) string {
	tag := func(name string) string {
		b := string(body)
		i := strings.Index(b, "<"+name+">")
		j := strings.Index(b, "</"+name+">")
		if i < 0 || j < i {
			return ""
		}
		return b[i+len(name)+2 : j]
	}
	if c := tag("Code"); c != "" {
		return c + ": " + tag("Message")
	}
	return strconv.Quote(string(body[:min(len(body), 200)]))
}
