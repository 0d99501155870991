package mailbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Payload format constants.
const (
	PayloadMagic = "THAWPAYL"
	Version      = 1
	HeaderSize   = 72        // bytes before the first entry
	MaxSize      = 256 << 20 // largest total length accepted
	MaxEntries   = 4096      // largest entry count accepted
	MaxNameLen   = 255       // longest entry name, in bytes
)

// Byte offsets of the header fields.
const (
	offVersion = 8
	offFlags   = 10
	offCount   = 12
	offLength  = 16
	offNonce   = 24
	offDigest  = 40
)

// minEntrySize is the smallest encoded entry: kind, name length, a one-byte
// name and the data length.
const minEntrySize = 1 + 2 + 1 + 4

// Kind is the type of a payload entry.
type Kind uint8

// Entry kinds. Zero is invalid; values above KindModule are reserved.
const (
	KindPlan   Kind = 1 // the device plan, JSON
	KindModule Kind = 2 // a kernel module, uncompressed ELF (.ko)
)

func (k Kind) String() string {
	switch k {
	case KindPlan:
		return "plan"
	case KindModule:
		return "module"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is one named item of a payload.
type Entry struct {
	Kind Kind
	Name string
	Data []byte
}

// Payload is a decoded payload.
type Payload struct {
	Version uint16
	Nonce   [16]byte
	Digest  [32]byte
	Size    int // total length in bytes, header included
	Entries []Entry
}

// Plan returns the data of the plan entry, or nil if there is none.
func (p *Payload) Plan() []byte {
	for _, e := range p.Entries {
		if e.Kind == KindPlan {
			return e.Data
		}
	}
	return nil
}

// Modules returns the module entries in the order they were written, which
// is the order to load them in.
func (p *Payload) Modules() []Entry {
	var m []Entry
	for _, e := range p.Entries {
		if e.Kind == KindModule {
			m = append(m, e)
		}
	}
	return m
}

var (
	// ErrNoPayload means the bytes do not start with PayloadMagic.
	ErrNoPayload = errors.New("no payload (magic absent)")
	// ErrNonce means the payload was made for another capture.
	ErrNonce = errors.New("payload made for another capture")
	// ErrDigest means the payload's digest does not match its bytes.
	ErrDigest = errors.New("digest mismatch")
)

// A FormatError reports a payload that [Parse] refuses: the byte offset and
// the field at fault. Err is one of ErrNoPayload, ErrNonce, ErrDigest,
// io.ErrUnexpectedEOF (wrapped) for a payload cut short, or a plain reason.
type FormatError struct {
	Offset int64
	Field  string
	Err    error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("mailbox: payload byte %d (%s): %v", e.Offset, e.Field, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int, field string, format string, args ...any) *FormatError {
	return &FormatError{Offset: int64(off), Field: field, Err: fmt.Errorf(format, args...)}
}

// checkName returns why name cannot name an entry, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("name of %d bytes, at most %d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return "name is not UTF-8"
	case strings.ContainsAny(name, "/\x00"):
		return "name contains '/' or NUL"
	case name == "." || name == "..":
		return "name is . or .."
	}
	return ""
}

// checkData returns why data cannot be the content of an entry of kind k, or
// "".
func checkData(k Kind, data []byte) string {
	switch k {
	case 0:
		return "kind 0 is invalid"
	case KindPlan:
		if !json.Valid(data) {
			return "plan is not valid JSON"
		}
	case KindModule:
		if !bytes.HasPrefix(data, []byte("\x7fELF")) {
			return "module is not an uncompressed ELF object"
		}
	}
	return ""
}

type entryKey struct {
	kind Kind
	name string
}

// A Writer builds a payload for the capture with a given nonce.
type Writer struct {
	nonce [16]byte
	buf   []byte // header space, then the encoded entries
	n     int
	seen  map[entryKey]bool
	plan  bool
	err   error
}

// NewWriter returns a Writer for the capture with the given nonce.
func NewWriter(nonce [16]byte) *Writer {
	return &Writer{nonce: nonce, buf: make([]byte, HeaderSize), seen: make(map[entryKey]bool)}
}

// Add appends an entry. It refuses kind 0, a name that is empty, longer than
// MaxNameLen, not UTF-8, "." or ".." or holds '/' or NUL, a name already used
// for the same kind, a second plan, a plan that is not JSON, a module that
// is not an ELF object, and an entry that would take the payload past
// MaxEntries or MaxSize. The data is copied.
func (w *Writer) Add(kind Kind, name string, data []byte) error {
	err := w.add(kind, name, data)
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) add(kind Kind, name string, data []byte) error {
	if r := checkName(name); r != "" {
		return fmt.Errorf("mailbox: %s entry %q: %s", kind, name, r)
	}
	if r := checkData(kind, data); r != "" {
		return fmt.Errorf("mailbox: %s entry %q: %s", kind, name, r)
	}
	k := entryKey{kind, name}
	switch {
	case w.seen[k]:
		return fmt.Errorf("mailbox: %s entry %q: name already used", kind, name)
	case kind == KindPlan && w.plan:
		return fmt.Errorf("mailbox: %s entry %q: the payload already has a plan", kind, name)
	case w.n >= MaxEntries:
		return fmt.Errorf("mailbox: %s entry %q: more than %d entries", kind, name, MaxEntries)
	}
	size := int64(len(w.buf)) + 1 + 2 + int64(len(name)) + 4 + int64(len(data))
	if size > MaxSize {
		return fmt.Errorf("mailbox: %s entry %q: payload would be %d bytes, at most %d", kind, name, size, MaxSize)
	}
	le := binary.LittleEndian
	w.buf = append(w.buf, byte(kind))
	w.buf = le.AppendUint16(w.buf, uint16(len(name)))
	w.buf = append(w.buf, name...)
	w.buf = le.AppendUint32(w.buf, uint32(len(data)))
	w.buf = append(w.buf, data...)
	w.seen[k] = true
	w.plan = w.plan || kind == KindPlan
	w.n++
	return nil
}

// Bytes returns the payload holding the entries added so far, or the first
// error Add returned, so that a caller may check once at the end.
func (w *Writer) Bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	b := bytes.Clone(w.buf)
	le := binary.LittleEndian
	copy(b, PayloadMagic)
	le.PutUint16(b[offVersion:], Version)
	le.PutUint16(b[offFlags:], 0)
	le.PutUint32(b[offCount:], uint32(w.n))
	le.PutUint64(b[offLength:], uint64(len(b)))
	copy(b[offNonce:], w.nonce[:])
	d := digest(b)
	copy(b[offDigest:], d[:])
	return b, nil
}

// digest is SHA-256 over p with the digest field taken as zero.
func digest(p []byte) [32]byte {
	h := sha256.New()
	h.Write(p[:offDigest])
	h.Write(make([]byte, 32))
	h.Write(p[offDigest+32:])
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Parse decodes and checks the payload at the start of b, which may be the
// whole mailbox region: bytes after the payload's total length are ignored.
// The payload must carry nonce, the capture's nonce. The entries' Data
// slices point into b.
func Parse(b []byte, nonce [16]byte) (*Payload, error) {
	if !bytes.HasPrefix(b, []byte(PayloadMagic)) {
		return nil, &FormatError{Offset: 0, Field: "magic", Err: ErrNoPayload}
	}
	if len(b) < HeaderSize {
		return nil, formatErr(len(b), "header", "%d bytes, the header takes %d: %w", len(b), HeaderSize, io.ErrUnexpectedEOF)
	}
	le := binary.LittleEndian
	p := &Payload{Version: le.Uint16(b[offVersion:])}
	if p.Version != Version {
		return nil, formatErr(offVersion, "version", "version %d, want %d", p.Version, Version)
	}
	if f := le.Uint16(b[offFlags:]); f != 0 {
		return nil, formatErr(offFlags, "flags", "unknown flags %#x", f)
	}
	count := le.Uint32(b[offCount:])
	if count > MaxEntries {
		return nil, formatErr(offCount, "entry count", "%d entries, at most %d", count, MaxEntries)
	}
	total := le.Uint64(b[offLength:])
	switch {
	case total < HeaderSize:
		return nil, formatErr(offLength, "total length", "%d bytes, less than the header's %d", total, HeaderSize)
	case total > MaxSize:
		return nil, formatErr(offLength, "total length", "%d bytes, at most %d", total, MaxSize)
	case total > uint64(len(b)):
		return nil, formatErr(offLength, "total length", "%d bytes, only %d present: %w", total, len(b), io.ErrUnexpectedEOF)
	}
	if uint64(count) > (total-HeaderSize)/minEntrySize {
		return nil, formatErr(offCount, "entry count", "%d entries cannot fit in %d bytes", count, total)
	}
	b = b[:total]
	p.Size = int(total)
	copy(p.Nonce[:], b[offNonce:])
	if p.Nonce != nonce {
		return nil, &FormatError{Offset: offNonce, Field: "nonce", Err: fmt.Errorf("%w: nonce %x, this capture's is %x", ErrNonce, p.Nonce, nonce)}
	}
	copy(p.Digest[:], b[offDigest:])
	if d := digest(b); d != p.Digest {
		return nil, &FormatError{Offset: offDigest, Field: "digest", Err: fmt.Errorf("%w: payload says %x, its bytes hash to %x", ErrDigest, p.Digest, d)}
	}

	p.Entries = make([]Entry, 0, count)
	seen := make(map[entryKey]bool, count)
	plan := false
	off := HeaderSize
	for i := 0; i < int(count); i++ {
		field := func(f string) string { return "entry " + strconv.Itoa(i) + " " + f }
		if len(b)-off < 3 {
			return nil, formatErr(off, field("header"), "entry count is %d, the payload ends after %d entries", count, i)
		}
		kind := Kind(b[off])
		nlen := int(le.Uint16(b[off+1:]))
		if kind == 0 {
			return nil, formatErr(off, field("kind"), "kind 0 is invalid")
		}
		if nlen == 0 || nlen > MaxNameLen {
			return nil, formatErr(off+1, field("name length"), "%d bytes, want 1 to %d", nlen, MaxNameLen)
		}
		off += 3
		if len(b)-off < nlen+4 {
			return nil, formatErr(off, field("name"), "name of %d bytes and data length run past the total length %d", nlen, total)
		}
		name := string(b[off : off+nlen])
		if r := checkName(name); r != "" {
			return nil, formatErr(off, field("name"), "%s", r)
		}
		off += nlen
		dlen := uint64(le.Uint32(b[off:]))
		if dlen > uint64(len(b)-off-4) {
			return nil, formatErr(off, field("data length"), "%d bytes run past the total length %d", dlen, total)
		}
		off += 4
		data := b[off : off+int(dlen) : off+int(dlen)]
		if r := checkData(kind, data); r != "" {
			return nil, formatErr(off, field("data"), "%s %q: %s", kind, name, r)
		}
		k := entryKey{kind, name}
		switch {
		case seen[k]:
			return nil, formatErr(off-4-nlen, field("name"), "%s %q listed twice", kind, name)
		case kind == KindPlan && plan:
			return nil, formatErr(off-7-nlen, field("kind"), "second plan %q", name)
		}
		seen[k] = true
		plan = plan || kind == KindPlan
		p.Entries = append(p.Entries, Entry{Kind: kind, Name: name, Data: data})
		off += int(dlen)
	}
	if off != len(b) {
		return nil, formatErr(off, "end", "%d bytes after the last of %d entries, before the total length %d", len(b)-off, count, total)
	}
	return p, nil
}
