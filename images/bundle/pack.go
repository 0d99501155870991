package bundle

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// A pack is how a version 2 bundle travels to a store in one upload: the
// chunks the store lacks, then the bundle object. FORMAT.md describes it.
const (
	packMagic      = "THAWPACK"
	packVersion    = 1
	PackHeaderSize = 16
	// PackRecordHeaderSize is the fixed header before each record's bytes.
	PackRecordHeaderSize = 48
	// MaxPackBundle bounds the bundle object of a pack (index, manifest,
	// signature, wrapped key).
	MaxPackBundle = maxIndexSize + maxManifestSize + maxKeyBlob + 1<<20
	// maxStoredChunk bounds a stored chunk: the largest chunk, zstd's
	// worst case, and the seal.
	maxStoredChunk = maxChunkSize + maxChunkSize/8 + 1024 + 64
)

// Record kinds.
const (
	RecordChunk  = 'C' // a stored chunk, named by its sha256
	RecordBundle = 'B' // the bundle object: the last record
)

// PackRecord is a record's header.
type PackRecord struct {
	Kind   byte
	Size   int64
	SHA256 string // of the record's bytes, in hex
	Offset int64  // of the record's header in the pack
}

// IsPack reports whether b (at least PackHeaderSize bytes) starts a pack.
func IsPack(b []byte) bool { return len(b) >= 8 && string(b[:8]) == packMagic }

// PackWriter writes a pack.
type PackWriter struct {
	w   io.Writer
	off int64
	err error
}

// NewPackWriter writes the pack header to w.
func NewPackWriter(w io.Writer) (*PackWriter, error) {
	pw := &PackWriter{w: w}
	h := make([]byte, PackHeaderSize)
	copy(h, packMagic)
	binary.LittleEndian.PutUint32(h[8:], packVersion)
	return pw, pw.write(h)
}

func (pw *PackWriter) write(b []byte) error {
	if pw.err != nil {
		return pw.err
	}
	n, err := pw.w.Write(b)
	pw.off += int64(n)
	if err != nil {
		pw.err = fmt.Errorf("bundle: pack: write at byte %d: %w", pw.off, err)
	}
	return pw.err
}

// Written is the bytes written so far.
func (pw *PackWriter) Written() int64 { return pw.off }

// Record writes one record whose bytes hash to sum.
func (pw *PackWriter) Record(kind byte, sum [32]byte, b []byte) error {
	h := make([]byte, PackRecordHeaderSize)
	h[0] = kind
	binary.LittleEndian.PutUint64(h[8:], uint64(len(b)))
	copy(h[16:], sum[:])
	if err := pw.write(h); err != nil {
		return err
	}
	return pw.write(b)
}

// PackReader reads a pack record by record; each record's bytes are
// checked against its sha256 as they are read.
type PackReader struct {
	r    io.Reader
	off  int64
	cur  *PackRecord
	left int64
	h    hash.Hash
	done bool
}

// NewPackReader reads and checks the pack header.
func NewPackReader(r io.Reader) (*PackReader, error) {
	h := make([]byte, PackHeaderSize)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, fmt.Errorf("bundle: pack header: %w", err)
	}
	if !IsPack(h) {
		return nil, fmt.Errorf("bundle: pack header magic %q: not a thaw pack", h[:8])
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != packVersion {
		return nil, fmt.Errorf("bundle: pack version %d, this thaw reads %d", v, packVersion)
	}
	return &PackReader{r: r, off: PackHeaderSize}, nil
}

// ErrPackEnd is returned by Next after the bundle record: a pack has
// nothing after it.
var ErrPackEnd = errors.New("bundle: pack ends after its bundle record")

// ErrNoBundle is returned by Next when a pack ends after a whole record
// but without the bundle record: an upload cut between two chunks, or a
// pre-copy of chunks only.
var ErrNoBundle = errors.New("bundle: pack ends without its bundle record (the pack must end with a bundle record)")

// Next reads the next record's header; the record's bytes must have been
// read to their end (Read returns io.EOF) before. After the bundle record,
// Next checks that the pack ends there and returns ErrPackEnd.
func (pr *PackReader) Next() (*PackRecord, error) {
	if pr.cur != nil && pr.left > 0 {
		return nil, fmt.Errorf("bundle: pack: record at byte %d not read to its end", pr.cur.Offset)
	}
	if pr.done {
		var one [1]byte
		if n, _ := io.ReadFull(pr.r, one[:]); n != 0 {
			return nil, fmt.Errorf("bundle: pack: bytes after the bundle record, at byte %d", pr.off)
		}
		return nil, ErrPackEnd
	}
	h := make([]byte, PackRecordHeaderSize)
	if _, err := io.ReadFull(pr.r, h); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("bundle: pack: at byte %d: %w", pr.off, ErrNoBundle)
		}
		return nil, fmt.Errorf("bundle: pack: record header at byte %d (the pack must end with a bundle record): %w", pr.off, err)
	}
	rec := &PackRecord{Kind: h[0], Size: int64(binary.LittleEndian.Uint64(h[8:])), SHA256: hex.EncodeToString(h[16:48]), Offset: pr.off}
	for _, b := range h[1:8] {
		if b != 0 {
			return nil, fmt.Errorf("bundle: pack: record header at byte %d: reserved bytes are not zero", pr.off)
		}
	}
	limit := int64(0)
	switch rec.Kind {
	case RecordChunk:
		limit = maxStoredChunk
	case RecordBundle:
		limit = MaxPackBundle
		pr.done = true
	default:
		return nil, fmt.Errorf("bundle: pack: record at byte %d: unknown kind %q", pr.off, rec.Kind)
	}
	if rec.Size <= 0 || rec.Size > limit {
		return nil, fmt.Errorf("bundle: pack: record at byte %d: size %d outside 1..%d", pr.off, rec.Size, limit)
	}
	pr.off += PackRecordHeaderSize
	pr.cur, pr.left, pr.h = rec, rec.Size, sha256.New()
	return rec, nil
}

// Read reads the current record's bytes. At its end it returns io.EOF if
// they match the record's sha256, and an error naming the record if not.
func (pr *PackReader) Read(p []byte) (int, error) {
	if pr.cur == nil {
		return 0, errors.New("bundle: pack: Read before Next")
	}
	if pr.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > pr.left {
		p = p[:pr.left]
	}
	n, err := pr.r.Read(p)
	pr.h.Write(p[:n])
	pr.left -= int64(n)
	pr.off += int64(n)
	if pr.left == 0 {
		if got := hex.EncodeToString(pr.h.Sum(nil)); got != pr.cur.SHA256 {
			return n, fmt.Errorf("bundle: pack: record at byte %d: sha256 %s, its header says %s: %w", pr.cur.Offset, got, pr.cur.SHA256, ErrDamaged)
		}
		return n, nil
	}
	if err == io.EOF {
		err = fmt.Errorf("bundle: pack: record at byte %d: %w after %d of %d bytes", pr.cur.Offset, io.ErrUnexpectedEOF, pr.cur.Size-pr.left, pr.cur.Size)
	}
	return n, err
}
