package bundle

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"aead.dev/minisign"
	"github.com/klauspost/compress/zstd"

	"github.com/thawlinux/thaw/images/manifest"
)

// ErrUnsigned is returned by Open when a public key is given but the bundle
// carries no signature.
var ErrUnsigned = errors.New("the bundle is not signed")

// ErrBadSignature is returned when the signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Reader reads a bundle.
type Reader struct {
	r        io.ReaderAt
	size     int64
	Index    *Index
	Manifest *manifest.Manifest
	// Signed is true when the index's signature verified against the key
	// given to Open.
	Signed    bool
	IndexRaw  []byte
	Signature []byte
	// Label is what the signature's trusted comment says (id, host,
	// time), once the signature verified; else the index's id and time.
	Label Label
	dec   *zstd.Decoder
	aead  cipher.AEAD    // the data key of an encrypted bundle, once unlocked
	siv   *siv           // the chunk key of an encrypted version 2 bundle
	src   ChunkSource    // where a version 2 bundle's chunks are
	order map[string]int // stream name → position in the index (chunk nonces)
	bases baseCache      // the base chunks of page deltas read last
}

// Digest is the SHA-256 of the index bytes, in hex: it names one bundle
// exactly (thaw.image=URL#sha256=DIGEST pins it).
func (br *Reader) Digest() string {
	sum := sha256.Sum256(br.IndexRaw)
	return hex.EncodeToString(sum[:])
}

// Open reads the trailer, the index and the manifest. With a public key the
// signature must verify; with nil the bundle is opened unverified (Signed
// false) — for inspection only.
func Open(r io.ReaderAt, size int64, pub *minisign.PublicKey) (*Reader, error) {
	if size < HeaderSize+TrailerSize {
		return nil, fmt.Errorf("bundle: %d bytes is too short for a bundle", size)
	}
	head := make([]byte, HeaderSize)
	if err := readAt(r, head, 0); err != nil {
		return nil, fmt.Errorf("bundle: header: %w", err)
	}
	if string(head[:8]) != headerMagic {
		return nil, fmt.Errorf("bundle: header magic %q: not a thaw bundle", head[:8])
	}
	tb := make([]byte, TrailerSize)
	if err := readAt(r, tb, size-TrailerSize); err != nil {
		return nil, fmt.Errorf("bundle: trailer at byte %d: %w", size-TrailerSize, err)
	}
	t, err := parseTrailer(tb, size)
	if err != nil {
		return nil, err
	}
	br := &Reader{r: r, size: size}
	// The signature first (at most 4 KiB): a bundle signed by another key
	// is refused before its index is read.
	if t.SigSize > 0 {
		br.Signature = make([]byte, t.SigSize)
		if err := readAt(r, br.Signature, t.SigAt); err != nil {
			return nil, fmt.Errorf("bundle: signature at byte %d: %w", t.SigAt, err)
		}
	}
	if pub != nil {
		if t.SigSize == 0 {
			return nil, fmt.Errorf("bundle: %w: refusing it (a bundle must be signed by the key given)", ErrUnsigned)
		}
		var sig minisign.Signature
		if err := sig.UnmarshalText(br.Signature); err == nil && sig.KeyID != pub.ID() {
			return nil, fmt.Errorf("bundle: index (bytes %d+%d): %w: it was signed by key %016X, not by the given key %016X", t.IndexAt, t.IndexSize, ErrBadSignature, sig.KeyID, pub.ID())
		}
	}
	if br.IndexRaw, err = readGrowing(r, t.IndexAt, t.IndexSize); err != nil {
		return nil, fmt.Errorf("bundle: index at byte %d: %w", t.IndexAt, err)
	}
	if pub != nil {
		if !minisign.Verify(*pub, br.IndexRaw, br.Signature) {
			var sig minisign.Signature
			who := ""
			if sig.UnmarshalText(br.Signature) == nil && sig.KeyID != pub.ID() {
				who = fmt.Sprintf(": it was signed by key %016X, not by the given key %016X", sig.KeyID, pub.ID())
			}
			return nil, fmt.Errorf("bundle: index (bytes %d+%d): %w%s", t.IndexAt, t.IndexSize, ErrBadSignature, who)
		}
		br.Signed = true
		var sig minisign.Signature
		if sig.UnmarshalText(br.Signature) == nil {
			br.Label, _ = ParseLabel(sig.TrustedComment)
		}
	}
	ix, err := ParseIndex(br.IndexRaw, t.IndexAt)
	if err != nil {
		return nil, err
	}
	if ix.Version != t.Version {
		return nil, fmt.Errorf("bundle: index version %d in a version %d bundle", ix.Version, t.Version)
	}
	br.Index = ix
	br.order = map[string]int{}
	for i, s := range ix.Streams {
		br.order[s.Name] = i
	}
	if br.Label.ID == "" {
		br.Label = Label{ID: ix.ID, Created: ix.Created}
	}
	mb := make([]byte, ix.Manifest.Size)
	if err := readAt(r, mb, ix.Manifest.At); err != nil {
		return nil, fmt.Errorf("bundle: manifest at byte %d: %w", ix.Manifest.At, err)
	}
	if sum := sha256.Sum256(mb); hex.EncodeToString(sum[:]) != ix.Manifest.SHA256 {
		return nil, fmt.Errorf("bundle: manifest at byte %d: sha256 %x, the index says %s: edited after signing", ix.Manifest.At, sum, ix.Manifest.SHA256)
	}
	if br.Manifest, err = manifest.Parse(mb); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	br.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxMemory(maxChunkSize*2))
	if err != nil {
		return nil, err
	}
	return br, nil
}

// Close releases the decoder.
func (br *Reader) Close() {
	if br.dec != nil {
		br.dec.Close()
	}
}

// ReadChunk reads, verifies and decompresses chunk i of stream s into dst
// (reused when big enough).
func (br *Reader) ReadChunk(s *Stream, i int, dst []byte) ([]byte, error) {
	c := s.Chunks[i]
	if c.Zero {
		if int64(cap(dst)) < c.Len {
			dst = make([]byte, c.Len)
		}
		dst = dst[:c.Len]
		clear(dst)
		return dst, nil
	}
	stored := make([]byte, c.Stored)
	if err := br.readStored(context.Background(), s, i, stored); err != nil {
		return nil, err
	}
	return br.decodeChunk(context.Background(), s, i, stored, dst)
}

// SetChunkSource says where the chunks of a version 2 bundle are.
func (br *Reader) SetChunkSource(src ChunkSource) { br.src = src }

// InStore reports whether the bundle's chunks are in a chunk store
// (version 2) rather than in the bundle.
func (br *Reader) InStore() bool { return br.Index.Store != "" }

// place names where chunk c is: its byte in the bundle, or its object.
func (br *Reader) place(c Chunk) string {
	if br.Index.Store != "" {
		return ChunkPath(c.SHA256)
	}
	return fmt.Sprintf("at byte %d", c.At)
}

// readStored reads the stored bytes of chunk i of s into b.
func (br *Reader) readStored(ctx context.Context, s *Stream, i int, b []byte) error {
	c := s.Chunks[i]
	var err error
	if br.Index.Store == "" {
		err = readAt(br.r, b, c.At)
	} else if br.src == nil {
		err = errors.New("the bundle's chunks are in a chunk store, and no store was given")
	} else {
		err = br.src.ReadChunk(ctx, c.SHA256, b)
	}
	if err != nil {
		return fmt.Errorf("bundle: stream %q chunk %d %s: %w", s.Name, i, br.place(c), err)
	}
	return nil
}

func (br *Reader) decodeChunk(ctx context.Context, s *Stream, i int, stored, dst []byte) ([]byte, error) {
	c := s.Chunks[i]
	if len(c.Base) > 0 {
		payload, err := br.payload(s, i, stored)
		if err != nil {
			return nil, err
		}
		return br.applyDelta(ctx, s, i, payload, dst)
	}
	out, err := br.decode(s, i, stored, dst)
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != c.Len {
		return nil, fmt.Errorf("bundle: stream %q chunk %d %s: %d bytes after decompression, the index says %d", s.Name, i, br.place(c), len(out), c.Len)
	}
	return out, nil
}

// payload checks, decrypts and decompresses chunk i of s into a new
// buffer: its plaintext, or for a page delta its encoding.
func (br *Reader) payload(s *Stream, i int, stored []byte) ([]byte, error) {
	return br.decode(s, i, stored, nil)
}

// decode checks stored against the index, decrypts and decompresses it.
func (br *Reader) decode(s *Stream, i int, stored, dst []byte) ([]byte, error) {
	c := s.Chunks[i]
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, fmt.Errorf("bundle: stream %q chunk %d %s: %w", s.Name, i, br.place(c), ErrDamaged)
	}
	if br.siv != nil {
		plain, err := br.siv.open(stored[sivNonce:sivNonce], stored)
		if err != nil {
			return nil, fmt.Errorf("bundle: stream %q chunk %d %s: decryption: %w", s.Name, i, br.place(c), err)
		}
		stored = plain
	} else if br.Index.Encryption != nil {
		if br.aead == nil {
			return nil, fmt.Errorf("bundle: stream %q chunk %d: %w to %s and not unlocked", s.Name, i, ErrEncrypted, strings.Join(br.Index.Encryption.Recipients, ", "))
		}
		plain, err := br.aead.Open(stored[:0], chunkNonce(br.order[s.Name], i), stored, chunkAAD(s.Name, c))
		if err != nil {
			return nil, fmt.Errorf("bundle: stream %q chunk %d %s: decryption: %w", s.Name, i, br.place(c), err)
		}
		stored = plain
	}
	out, err := br.dec.DecodeAll(stored, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("bundle: stream %q chunk %d %s: zstd: %w", s.Name, i, br.place(c), err)
	}
	return out, nil
}

// StreamReader reads one stream sequentially, verifying each chunk before
// handing out its bytes.
type StreamReader struct {
	br  *Reader
	s   *Stream
	i   int
	cur []byte
	buf []byte
}

// Open returns a sequential reader of the stream called name.
func (br *Reader) OpenStream(name string) (*StreamReader, error) {
	s := br.Index.Stream(name)
	if s == nil {
		return nil, fmt.Errorf("bundle: no stream %q", name)
	}
	return &StreamReader{br: br, s: s}, nil
}

// Stream is the stream's index entry.
func (sr *StreamReader) Stream() *Stream { return sr.s }

func (sr *StreamReader) Read(p []byte) (int, error) {
	for len(sr.cur) == 0 {
		if sr.i >= len(sr.s.Chunks) {
			return 0, io.EOF
		}
		out, err := sr.br.ReadChunk(sr.s, sr.i, sr.buf)
		if err != nil {
			return 0, err
		}
		sr.buf, sr.cur = out, out
		sr.i++
	}
	n := copy(p, sr.cur)
	sr.cur = sr.cur[n:]
	return n, nil
}

// VerifyStored checks the hash of every stored chunk without decrypting or
// decompressing it: what can be checked of an encrypted bundle without an
// identity.
func (br *Reader) VerifyStored(progress func(done, total int64)) error {
	var total, done int64
	for _, s := range br.Index.Streams {
		total += s.StoredSize()
	}
	for _, s := range br.Index.Streams {
		for i, c := range s.Chunks {
			if c.Zero {
				continue
			}
			stored := make([]byte, c.Stored)
			if err := br.readStored(context.Background(), s, i, stored); err != nil {
				return err
			}
			if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != c.SHA256 {
				return fmt.Errorf("bundle: stream %q chunk %d %s: %w", s.Name, i, br.place(c), ErrDamaged)
			}
			done += c.Stored
			if progress != nil {
				progress(done, total)
			}
		}
	}
	return nil
}

// Verify reads every chunk of every stream and checks it, calling progress
// (if not nil) with the stored bytes read so far.
func (br *Reader) Verify(progress func(done, total int64)) error {
	var total, done int64
	for _, s := range br.Index.Streams {
		total += s.StoredSize()
	}
	var buf []byte
	for _, s := range br.Index.Streams {
		for i := range s.Chunks {
			out, err := br.ReadChunk(s, i, buf)
			if err != nil {
				return err
			}
			buf = out
			done += s.Chunks[i].Stored
			if progress != nil {
				progress(done, total)
			}
		}
	}
	return nil
}

func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// readGrowing reads n bytes at off in pieces of at most 1 MiB, so that
// what it allocates follows what the source delivers: a trailer that
// claims a huge index (it is not signed) costs no more memory than the
// bytes that are really there.
func readGrowing(r io.ReaderAt, off, n int64) ([]byte, error) {
	const piece = 1 << 20
	var b []byte
	for done := int64(0); done < n; {
		k := min(n-done, piece)
		b = append(b, make([]byte, k)...)
		if err := readAt(r, b[done:done+k], off+done); err != nil {
			return nil, fmt.Errorf("byte %d of %d: %w", done, n, err)
		}
		done += k
	}
	return b, nil
}

// readAt fills p from off: a ReaderAt may answer io.EOF along with the
// last bytes of its source (an S3 object does), which is no error here.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		return nil
	}
	return err
}
