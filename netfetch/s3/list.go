package s3

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
)

// A presigned list lets a machine with no credential read one bundle of a
// bucket: a text object of lines
//
//	thaw-presigned 1
//	bundle URL
//	chunk SUM URL
//	…
//
// with a presigned GET URL for the bundle object and one for each chunk
// it names. The list is no more trusted than the URLs in it: the bundle's
// signature and the chunks' hashes in its signed index are what the
// reader checks.
type List struct {
	Bundle string
	Chunks map[string]string // sum → URL
}

// ListMagic starts a presigned list.
const ListMagic = "thaw-presigned 1\n"

// MaxList bounds a presigned list (about 180,000 chunks: 700 GiB of
// 4 MiB chunks).
const MaxList = 128 << 20

// IsList reports whether head (the first bytes of an object) starts a
// presigned list.
func IsList(head []byte) bool { return bytes.HasPrefix(head, []byte(ListMagic)) }

// Write writes the list, chunks in the order of their sums.
func (l *List) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%sbundle %s\n", ListMagic, l.Bundle)
	sums := make([]string, 0, len(l.Chunks))
	for s := range l.Chunks {
		sums = append(sums, s)
	}
	sort.Strings(sums)
	for _, s := range sums {
		fmt.Fprintf(bw, "chunk %s %s\n", s, l.Chunks[s])
	}
	return bw.Flush()
}

// ParseList reads a presigned list of at most MaxList bytes. Errors name
// the line.
func ParseList(r io.Reader) (*List, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxList+1))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	l := &List{Chunks: map[string]string{}}
	n, size := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		size += len(line) + 1
		if size > MaxList {
			return nil, fmt.Errorf("presigned list: longer than %d bytes", MaxList)
		}
		if n == 1 {
			if line+"\n" != ListMagic {
				return nil, fmt.Errorf("presigned list: line 1: %q is not %q", line, strings.TrimSpace(ListMagic))
			}
			continue
		}
		f := strings.Split(line, " ")
		switch {
		case len(f) == 2 && f[0] == "bundle" && l.Bundle == "":
			if err := checkURL(f[1]); err != nil {
				return nil, fmt.Errorf("presigned list: line %d: %w", n, err)
			}
			l.Bundle = f[1]
		case len(f) == 3 && f[0] == "chunk":
			if _, ok := chunkName(f[1][:min(2, len(f[1]))] + "/" + f[1]); !ok {
				return nil, fmt.Errorf("presigned list: line %d: %q is not a chunk's sha256", n, f[1])
			}
			if _, dup := l.Chunks[f[1]]; dup {
				return nil, fmt.Errorf("presigned list: line %d: chunk %s listed twice", n, f[1])
			}
			if err := checkURL(f[2]); err != nil {
				return nil, fmt.Errorf("presigned list: line %d: %w", n, err)
			}
			l.Chunks[f[1]] = f[2]
		default:
			return nil, fmt.Errorf("presigned list: line %d: want \"bundle URL\" once, then \"chunk SUM URL\"", n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("presigned list: after line %d: %w", n, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("presigned list: empty")
	}
	if l.Bundle == "" {
		return nil, fmt.Errorf("presigned list: no bundle line")
	}
	return l, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", Redact(s))
	}
	return nil
}

// Redact is a URL without its query (a presigned URL's signature): what
// a console or log may show.
func Redact(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}
