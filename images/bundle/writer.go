package bundle

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"aead.dev/minisign"
	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/thawlinux/thaw/images/manifest"
)

// Writer writes a bundle front to back into any io.Writer.
type Writer struct {
	w         io.Writer
	off       int64
	chunkSize int64
	enc       *zstd.Encoder
	index     Index
	open      *StreamWriter
	err       error
	cbuf      []byte
	sbuf      []byte // a sealed chunk

	aead       cipher.AEAD // nil: plaintext
	wrappedKey []byte
	recipients []string

	// In a store (version 2): the chunks go out as pack records, the
	// bundle object is built in obj and sent last.
	store *StoreOptions
	pack  RecordWriter
	obj   bytes.Buffer
	siv   *siv
	seen  map[string]bool
	stats Stats
}

// StoreOptions make a Writer write a version 2 bundle: a pack for a chunk
// store (thaw serve), holding only the chunks the store lacks.
type StoreOptions struct {
	// Have reports whether the store already holds a chunk (by the
	// sha256 of its stored bytes); such a chunk is not sent again.
	Have func(sum string) bool
	// ChunkKey seals an encrypted bundle's chunks (ChunkKeySize bytes):
	// bundles sealed with one chunk key share their equal chunks. Nil
	// makes a random one, which shares nothing.
	ChunkKey []byte
	// Plain, if not nil, remembers each disk chunk stored, by the SHA-256
	// of its plaintext; a disk chunk found in it (and in the store) is
	// taken as it is, not compressed and sealed again. Writers that share
	// a Plain (a capture's pre-copy and its frozen phase) must seal alike:
	// the same ChunkKey, or both plaintext (NewWriter refuses otherwise).
	Plain *Plain
	// Pages, if not nil, knows the pages of chunks already in the store
	// (a previous capture's memory, Reader.IndexPages): a chunk that
	// finds enough of its pages there is stored as a page delta against
	// them. It must have been read with the same chunk key.
	Pages *Pages
	// Records, if set, takes the records instead of a pack on the
	// Writer's io.Writer (which is then not written): a store that keeps
	// each chunk as an object of its own (S3).
	Records RecordWriter
}

// RecordWriter takes a version 2 bundle's records as they are made: the
// chunks the store lacks (RecordChunk), then the bundle object
// (RecordBundle). b is the record's bytes and sum their SHA-256; b may be
// reused once Record returns. A PackWriter is one.
type RecordWriter interface {
	Record(kind byte, sum [32]byte, b []byte) error
}

// Plain maps the SHA-256 of a disk chunk's plaintext to the chunk stored.
type Plain struct {
	m   map[[32]byte]PlainChunk
	key [32]byte // what seals the chunks: a hash of the chunk key, or zero
	set bool
}

// NewPlain makes an empty Plain.
func NewPlain() *Plain { return &Plain{m: map[[32]byte]PlainChunk{}} }

// Len is how many chunks the Plain remembers.
func (p *Plain) Len() int { return len(p.m) }

// bind ties p to the sealing of one chunk key (nil: plaintext).
func (p *Plain) bind(chunkKey []byte, encrypted bool) error {
	var k [32]byte
	if encrypted {
		if chunkKey == nil {
			return errors.New("bundle: a Plain needs a ChunkKey: a random key per Writer would name chunks another Writer cannot open")
		}
		k = sha256.Sum256(append([]byte("thaw plain "), chunkKey...))
	}
	if p.set && p.key != k {
		return errors.New("bundle: a Plain shared by Writers that seal differently")
	}
	p.key, p.set = k, true
	return nil
}

// PlainChunk is a stored chunk, as Plain remembers it.
type PlainChunk struct {
	SHA256 string
	Stored int64
}

// Stats count what a Writer stored and sent.
type Stats struct {
	Chunks      int   // stored (non-zero) chunks in the index
	StoredBytes int64 // their stored bytes
	Sent        int   // chunks sent (not already in the store, nor sent before)
	SentBytes   int64 // their stored bytes
	Reused      int   // disk chunks found in StoreOptions.Plain: not compressed again
	Deltas      int   // chunks stored as page deltas (StoreOptions.Pages)
	DeltaPages  int   // pages those deltas take from their bases
}

// WriterOptions tune a Writer.
type WriterOptions struct {
	ChunkSize int64 // default DefaultChunkSize
	// Level is the zstd level: 1 fastest … 4 best; default 1.
	Level int
	// Recipients encrypt the chunks (SchemeAge, or SchemeStore in a
	// store): only their identities can read the bundle's streams. None
	// writes them in plaintext.
	Recipients []*age.X25519Recipient
	// Store, if set, writes a version 2 bundle for a chunk store, as a
	// pack.
	Store *StoreOptions
	// ID names the bundle (16 hex digits); default: random. A capture
	// gives its pre-copy and its bundle the same.
	ID string
	// Precopy writes the pre-copy of a capture (Index.Precopy).
	Precopy bool
}

// NewWriter starts a bundle on w, writing its header.
func NewWriter(w io.Writer, opt WriterOptions) (*Writer, error) {
	if opt.ChunkSize == 0 {
		opt.ChunkSize = DefaultChunkSize
		if opt.Store != nil {
			opt.ChunkSize = DefaultStoreChunkSize
		}
	}
	if opt.ChunkSize < 4096 || opt.ChunkSize > maxChunkSize || opt.ChunkSize%4096 != 0 {
		return nil, fmt.Errorf("bundle: chunk size %d: want a multiple of 4096 in 4096..%d", opt.ChunkSize, maxChunkSize)
	}
	level := zstd.SpeedFastest
	if opt.Level > 1 {
		level = zstd.EncoderLevelFromZstd(opt.Level * 3)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	id := opt.ID
	if id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("bundle: id: %w", err)
		}
		id = hex.EncodeToString(b[:])
	} else if b, err := hex.DecodeString(id); err != nil || len(b) != 8 {
		return nil, fmt.Errorf("bundle: id %q: want 16 hex digits", id)
	}
	bw := &Writer{w: w, chunkSize: opt.ChunkSize, enc: enc, index: Index{Version: FormatVersion, ChunkSize: opt.ChunkSize, ID: id, Precopy: opt.Precopy}}
	if opt.Store != nil {
		if opt.Store.Plain != nil {
			if err := opt.Store.Plain.bind(opt.Store.ChunkKey, len(opt.Recipients) > 0); err != nil {
				return nil, err
			}
		}
		bw.store, bw.seen = opt.Store, map[string]bool{}
		bw.index.Version, bw.index.Store = StoreVersion, StoreChunks
		if bw.pack = opt.Store.Records; bw.pack == nil {
			if bw.pack, err = NewPackWriter(w); err != nil {
				return nil, err
			}
		}
	}
	// The data key is made and wrapped now, before any chunk (capture
	// writes its chunks while user space is frozen).
	if len(opt.Recipients) > 0 {
		if opt.Store != nil {
			bw.siv, bw.wrappedKey, bw.recipients, err = newChunkKey(opt.Store.ChunkKey, opt.Recipients)
		} else {
			bw.aead, bw.wrappedKey, bw.recipients, err = newDataKey(opt.Recipients)
		}
		if err != nil {
			return nil, err
		}
	}
	if opt.Store != nil && opt.Store.Pages != nil && opt.Store.Pages.seal != sealOf(bw.siv) {
		return nil, errors.New("bundle: the pages to make deltas against were sealed with another chunk key (or the one sealed, the other plain): a reader could not open them")
	}
	h := make([]byte, HeaderSize)
	copy(h, headerMagic)
	h[8] = byte(bw.index.Version)
	if err := bw.write(h); err != nil {
		return nil, err
	}
	return bw, nil
}

func (bw *Writer) write(b []byte) error {
	if bw.err != nil {
		return bw.err
	}
	if bw.store != nil {
		bw.obj.Write(b)
		bw.off += int64(len(b))
		return nil
	}
	n, err := bw.w.Write(b)
	bw.off += int64(n)
	if err != nil {
		bw.err = fmt.Errorf("bundle: write at byte %d: %w", bw.off, err)
	}
	return bw.err
}

// StreamWriter receives one stream's bytes; Close ends the stream.
type StreamWriter struct {
	bw     *Writer
	s      *Stream
	buf    []byte
	zeroOK bool
	closed bool
}

// Stream starts a new stream; the previous one must be closed. For disk and
// physmem streams all-zero chunks are left out of the bundle.
func (bw *Writer) Stream(name, kind string) (*StreamWriter, error) {
	if bw.open != nil && !bw.open.closed {
		return nil, fmt.Errorf("bundle: stream %q is still open", bw.open.s.Name)
	}
	if bw.index.Stream(name) != nil {
		return nil, fmt.Errorf("bundle: stream %q written twice", name)
	}
	s := &Stream{Name: name, Kind: kind, Chunks: []Chunk{}}
	bw.index.Streams = append(bw.index.Streams, s)
	sw := &StreamWriter{bw: bw, s: s, buf: make([]byte, 0, bw.chunkSize), zeroOK: kind == KindDisk || kind == KindPhysmem}
	bw.open = sw
	return sw, nil
}

// Write buffers p and stores every full chunk.
func (sw *StreamWriter) Write(p []byte) (int, error) {
	if sw.closed {
		return 0, fmt.Errorf("bundle: stream %q is closed", sw.s.Name)
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), cap(sw.buf)-len(sw.buf))
		sw.buf = append(sw.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(sw.buf) == cap(sw.buf) {
			if err := sw.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// ReadFrom copies r into the stream.
func (sw *StreamWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := io.ReadFull(r, sw.buf[len(sw.buf):cap(sw.buf)])
		sw.buf = sw.buf[:len(sw.buf)+n]
		total += int64(n)
		if len(sw.buf) == cap(sw.buf) {
			if ferr := sw.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// IsZero reports whether b holds only zero bytes (an all-zero chunk, which
// disk streams leave out).
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (sw *StreamWriter) flush() error { return sw.flushAt(false) }

// flushAt stores the buffered bytes as chunks: all of them, except that a
// memory stream in a store is cut where its content says (cdcCut), and
// keeps what is left after the last cut unless final.
func (sw *StreamWriter) flushAt(final bool) error {
	for len(sw.buf) > 0 {
		n := len(sw.buf)
		if sw.bw.store != nil && sw.s.Kind == KindMemory {
			if n = cdcCut(sw.buf, cap(sw.buf), final); n == 0 {
				return nil
			}
		}
		if err := sw.store(sw.buf[:n]); err != nil {
			return err
		}
		sw.buf = sw.buf[:copy(sw.buf, sw.buf[n:])]
	}
	return nil
}

// store stores one chunk.
func (sw *StreamWriter) store(b []byte) error {
	bw := sw.bw
	c := Chunk{Off: sw.s.Size, Len: int64(len(b))}
	var plain [32]byte
	usePlain := bw.store != nil && bw.store.Plain != nil && sw.s.Kind == KindDisk
	if sw.zeroOK && IsZero(b) {
		c.Zero = true
	} else if p, ok := bw.plainHit(b, usePlain, &plain); ok {
		// Stored before from the same bytes, and in the store: no need
		// to compress and seal them again.
		c.Stored, c.SHA256 = p.Stored, p.SHA256
		bw.stats.Chunks++
		bw.stats.StoredBytes += c.Stored
		bw.stats.Reused++
	} else {
		// A page delta against the store's pages: for memory at once (its
		// chunks rarely come out equal), for the rest only when the chunk
		// as it is is not in the store already.
		deltas := bw.store != nil && bw.store.Pages != nil && bw.aead == nil
		var stored []byte
		var sum [32]byte
		taken := 0
		if deltas && sw.s.Kind == KindMemory {
			if d, refs, n := bw.store.Pages.makeDelta(b); d != nil {
				c.Base, taken = refs, n
				stored, sum = bw.seal(sw, c, d)
			}
		}
		if stored == nil {
			stored, sum = bw.seal(sw, c, b)
			if deltas && sw.s.Kind != KindMemory && !bw.has(hex.EncodeToString(sum[:])) {
				if d, refs, n := bw.store.Pages.makeDelta(b); d != nil {
					c.Base, taken = refs, n
					stored, sum = bw.seal(sw, c, d)
				}
			}
		}
		if c.Base != nil {
			bw.stats.Deltas++
			bw.stats.DeltaPages += taken
		}
		c.Stored, c.SHA256 = int64(len(stored)), hex.EncodeToString(sum[:])
		if usePlain && c.Base == nil {
			bw.store.Plain.m[plain] = PlainChunk{SHA256: c.SHA256, Stored: c.Stored}
		}
		bw.stats.Chunks++
		bw.stats.StoredBytes += c.Stored
		if bw.store == nil {
			c.At = bw.off
			if err := bw.write(stored); err != nil {
				return err
			}
		} else if !bw.has(c.SHA256) {
			bw.seen[c.SHA256] = true
			bw.stats.Sent++
			bw.stats.SentBytes += c.Stored
			if err := bw.pack.Record(RecordChunk, sum, stored); err != nil {
				return err
			}
		}
	}
	sw.s.Chunks = append(sw.s.Chunks, c)
	sw.s.Size += c.Len
	return nil
}

// seal compresses payload and seals it as chunk c of sw: the stored
// bytes and their SHA-256 (the bytes live in the Writer's buffers until
// the next chunk).
func (bw *Writer) seal(sw *StreamWriter, c Chunk, payload []byte) ([]byte, [32]byte) {
	bw.cbuf = bw.enc.EncodeAll(payload, bw.cbuf[:0])
	stored := bw.cbuf
	switch {
	case bw.siv != nil:
		bw.sbuf = bw.siv.seal(bw.sbuf[:0], bw.cbuf)
		stored = bw.sbuf
	case bw.aead != nil:
		// Sealed at its place: the hash covers the stored bytes, so a
		// store can check them without the key.
		bw.sbuf = bw.aead.Seal(bw.sbuf[:0], chunkNonce(len(bw.index.Streams)-1, len(sw.s.Chunks)), bw.cbuf, chunkAAD(sw.s.Name, c))
		stored = bw.sbuf
	}
	return stored, sha256.Sum256(stored)
}

// has reports whether the store holds the chunk, or this Writer sent it.
func (bw *Writer) has(sum string) bool {
	return bw.seen[sum] || bw.store.Have != nil && bw.store.Have(sum)
}

// plainHit looks the plaintext b up in the store options' Plain (when
// use), leaving its SHA-256 in plain: a hit counts only if the store has
// its chunk (or this Writer sent it).
func (bw *Writer) plainHit(b []byte, use bool, plain *[32]byte) (PlainChunk, bool) {
	if !use {
		return PlainChunk{}, false
	}
	*plain = sha256.Sum256(b)
	p, ok := bw.store.Plain.m[*plain]
	if !ok || !(bw.seen[p.SHA256] || bw.store.Have != nil && bw.store.Have(p.SHA256)) {
		return PlainChunk{}, false
	}
	return p, true
}

// Close stores the last partial chunk.
func (sw *StreamWriter) Close() error {
	if sw.closed {
		return nil
	}
	err := sw.flushAt(true)
	sw.closed = true
	return err
}

// Finish writes the manifest, the index, its signature (when key is not
// nil) and the trailer. The Writer cannot be used afterwards.
func (bw *Writer) Finish(m *manifest.Manifest, key *minisign.PrivateKey) (*Index, error) {
	if bw.open != nil && !bw.open.closed {
		if err := bw.open.Close(); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, errors.New("bundle: no manifest")
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if bw.aead != nil || bw.siv != nil {
		ksum := sha256.Sum256(bw.wrappedKey)
		scheme := SchemeAge
		if bw.siv != nil {
			scheme = SchemeStore
		}
		bw.index.Encryption = &Encryption{Scheme: scheme, Recipients: bw.recipients,
			Key: Blob{At: bw.off, Size: int64(len(bw.wrappedKey)), SHA256: hex.EncodeToString(ksum[:])}}
		if err := bw.write(bw.wrappedKey); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(mb)
	bw.index.Manifest = Blob{At: bw.off, Size: int64(len(mb)), SHA256: hex.EncodeToString(sum[:])}
	if err := bw.write(mb); err != nil {
		return nil, err
	}
	bw.index.Created = time.Now().UTC().Format(time.RFC3339)
	ib, err := marshalIndex(&bw.index)
	if err != nil {
		return nil, err
	}
	t := trailer{IndexAt: bw.off, IndexSize: int64(len(ib))}
	if err := bw.write(ib); err != nil {
		return nil, err
	}
	t.SigAt = bw.off
	if key != nil {
		sig := minisign.SignWithComments(*key, ib, TrustedComment(bw.index.ID, m.Hostname, bw.index.Created), "signature from thaw")
		t.SigSize = int64(len(sig))
		if err := bw.write(sig); err != nil {
			return nil, err
		}
	}
	if err := bw.write(t.encode(bw.index.Version)); err != nil {
		return nil, err
	}
	bw.enc.Close()
	if bw.store != nil {
		if err := bw.pack.Record(RecordBundle, sha256.Sum256(bw.obj.Bytes()), bw.obj.Bytes()); err != nil {
			return nil, err
		}
	}
	return &bw.index, nil
}

// Stats says what the Writer stored and sent so far.
func (bw *Writer) Stats() Stats { return bw.stats }

func marshalIndex(ix *Index) ([]byte, error) {
	return jsonMarshal(ix)
}

// TrustedComment is the signed comment of a bundle's signature: its id,
// the source's hostname and the time it was written.
func TrustedComment(id, host, created string) string {
	if host == "" {
		host = "-"
	}
	return fmt.Sprintf("thaw bundle id=%s host=%s created=%s", id, strings.Join(strings.Fields(host), "_"), created)
}

// Label is what a bundle's trusted comment says.
type Label struct {
	ID, Host, Created string
}

// ParseLabel reads a trusted comment written by TrustedComment; ok is
// false for any other comment.
func ParseLabel(c string) (l Label, ok bool) {
	f := strings.Fields(c)
	if len(f) != 5 || f[0] != "thaw" || f[1] != "bundle" {
		return l, false
	}
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			l.ID = v
		case "host":
			l.Host = v
		case "created":
			l.Created = v
		default:
			return Label{}, false
		}
	}
	return l, l.ID != ""
}

// Warm runs the compressor once, so that its lazy set-up does not happen
// later (capture writes the bundle while user space is frozen).
func (bw *Writer) Warm() {
	bw.cbuf = bw.enc.EncodeAll(make([]byte, 4096), bw.cbuf[:0])
	if (bw.aead != nil || bw.siv != nil) && cap(bw.sbuf) == 0 {
		bw.sbuf = make([]byte, 0, bw.chunkSize+bw.chunkSize/8+1024+64)
	}
}
