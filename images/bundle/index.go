package bundle

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Format constants.
const (
	FormatVersion = 1
	// StoreVersion is a bundle whose chunks live in a chunk store
	// (index "store": "chunks"): the bundle object holds no chunk bytes.
	StoreVersion     = 2
	HeaderSize       = 64
	TrailerSize      = 64
	DefaultChunkSize = 4 << 20
	// DefaultStoreChunkSize is the chunk size of a bundle in a store.
	// Smaller chunks share more between captures (a block written costs
	// its chunk), but each is a request at restore: 1 MiB chunks made
	// the agent's write stage under TCG half as slow again as 4 MiB.
	DefaultStoreChunkSize = 4 << 20
	maxIndexSize          = 256 << 20
	maxSigSize            = 4096
	maxChunkSize          = 64 << 20
	maxManifestSize       = 16 << 20
	headerMagic           = "THAWBNDL"
	trailerMagic          = "THAWTAIL"
)

// PrecopySuffix names the pre-copy of the bundle NAME: NAME.precopy.
const PrecopySuffix = ".precopy"

// Stream kinds.
const (
	KindMemory  = "memory"
	KindDisk    = "disk"
	KindFile    = "file"
	KindPhysmem = "physmem"
)

// Index is the bundle's table of contents; its bytes are what is signed.
type Index struct {
	Version   int    `json:"version"`
	ChunkSize int64  `json:"chunk_size"`
	Created   string `json:"created,omitempty"`
	ID        string `json:"id,omitempty"` // random, made by the writer: names this bundle
	// Precopy marks the pre-copy of a capture in progress: the disks as
	// read while the server ran, stored beside the bundle as
	// NAME.precopy (PrecopySuffix) with the id that the capture's bundle
	// will carry. It holds no memory image and is never resumed: a
	// target following the capture (thaw.follow=1) writes it, then only
	// the chunks of the bundle that differ.
	Precopy bool `json:"precopy,omitempty"`
	// Store is "chunks" in a version 2 index: every stored chunk is an
	// object named by its sha256 in the chunks/ directory beside the
	// bundle object (ChunkPath), and chunks have no "at".
	Store string `json:"store,omitempty"`
	// Encryption is set when the chunks are encrypted.
	Encryption *Encryption `json:"encryption,omitempty"`
	Manifest   Blob        `json:"manifest"`
	Streams    []*Stream   `json:"streams"`
}

// Blob is a stored, hashed region of the bundle.
type Blob struct {
	At     int64  `json:"at"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Stream is one named byte stream cut in chunks.
type Stream struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Size   int64   `json:"size"`
	Chunks []Chunk `json:"chunks"`
}

// Chunk is one piece of a stream.
type Chunk struct {
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	At     int64  `json:"at,omitempty"`
	Stored int64  `json:"stored,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Zero   bool   `json:"zero,omitempty"`
	// Base, in a store, makes the chunk a page delta (delta.go): its
	// stored bytes say, page by page, which page of which of these chunks
	// to copy, or hold the page.
	Base []Ref `json:"base,omitempty"`
}

// StoredSize is the bytes the stream occupies in the bundle.
func (s *Stream) StoredSize() int64 {
	var n int64
	for _, c := range s.Chunks {
		n += c.Stored
	}
	return n
}

// Stream returns the stream called name, or nil.
func (ix *Index) Stream(name string) *Stream {
	for _, s := range ix.Streams {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ParseIndex decodes an index and checks it against a bundle of fileSize
// bytes whose stored data ends at dataEnd (the index offset).
func ParseIndex(b []byte, dataEnd int64) (*Index, error) {
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("bundle: index: %w", err)
	}
	switch {
	case ix.Version == FormatVersion && ix.Store == "":
	case ix.Version == StoreVersion && ix.Store == StoreChunks:
	default:
		return nil, fmt.Errorf("bundle: index: version %d with store %q: this thaw reads version %d (chunks inside) and %d (store %q)", ix.Version, ix.Store, FormatVersion, StoreVersion, StoreChunks)
	}
	// Whole pages: the held-back resume header of a memory stream must
	// not straddle two chunks.
	if ix.ChunkSize < 4096 || ix.ChunkSize > maxChunkSize || ix.ChunkSize%4096 != 0 {
		return nil, fmt.Errorf("bundle: index: chunk_size %d: want a multiple of 4096 in 4096..%d", ix.ChunkSize, maxChunkSize)
	}
	if err := checkBlob("manifest", ix.Manifest, dataEnd); err != nil {
		return nil, err
	}
	if ix.Manifest.Size > maxManifestSize {
		return nil, fmt.Errorf("bundle: index: manifest of %d bytes, more than %d", ix.Manifest.Size, maxManifestSize)
	}
	if err := checkEncryption(ix.Encryption, ix.Version, dataEnd); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i, s := range ix.Streams {
		if s == nil || s.Name == "" {
			return nil, fmt.Errorf("bundle: index: stream %d has no name", i)
		}
		if names[s.Name] {
			return nil, fmt.Errorf("bundle: index: stream %q appears twice", s.Name)
		}
		names[s.Name] = true
		switch s.Kind {
		case KindMemory, KindDisk, KindFile, KindPhysmem:
		default:
			return nil, fmt.Errorf("bundle: index: stream %q: unknown kind %q", s.Name, s.Kind)
		}
		var off int64
		for j, c := range s.Chunks {
			where := fmt.Sprintf("bundle: index: stream %q chunk %d", s.Name, j)
			if c.Off != off {
				return nil, fmt.Errorf("%s: offset %d, want %d (chunks must cover the stream in order)", where, c.Off, off)
			}
			if c.Len <= 0 || c.Len > ix.ChunkSize {
				return nil, fmt.Errorf("%s: length %d outside 1..%d", where, c.Len, ix.ChunkSize)
			}
			if c.Zero {
				if c.Stored != 0 || c.At != 0 || c.SHA256 != "" {
					return nil, fmt.Errorf("%s: a zero chunk with stored bytes", where)
				}
			} else if err := checkChunk(where, ix.Store, c, dataEnd); err != nil {
				return nil, err
			} else if err := checkBase(where, ix.Store, c); err != nil {
				return nil, err
			} else if c.Stored > c.Len+c.Len/8+1024 {
				return nil, fmt.Errorf("%s: %d stored bytes for %d bytes of data", where, c.Stored, c.Len)
			}
			off += c.Len
		}
		if off != s.Size {
			return nil, fmt.Errorf("bundle: index: stream %q: chunks cover %d bytes, size says %d", s.Name, off, s.Size)
		}
	}
	return &ix, nil
}

// checkChunk checks where a stored chunk is: in the bundle's data area, or
// (in a store) nowhere in the bundle, named by its hash alone.
func checkChunk(where, store string, c Chunk, dataEnd int64) error {
	if store == "" {
		return checkBlob(where[len("bundle: index: "):], Blob{c.At, c.Stored, c.SHA256}, dataEnd)
	}
	if c.At != 0 || c.Stored <= 0 {
		return fmt.Errorf("%s: at %d, %d stored bytes: a chunk in a store has no place in the bundle and at least one byte", where, c.At, c.Stored)
	}
	if !validSum(c.SHA256) {
		return fmt.Errorf("%s: sha256 %q is not 64 lower-case hex digits", where, c.SHA256)
	}
	return nil
}

// checkBase checks the bases a page delta names.
func checkBase(where, store string, c Chunk) error {
	if len(c.Base) == 0 {
		return nil
	}
	if store == "" || c.Len%pageSize != 0 || len(c.Base) > MaxBases {
		return fmt.Errorf("%s: a page delta of %d bytes over %d bases (only in a store, whole pages, at most %d bases)", where, c.Len, len(c.Base), MaxBases)
	}
	for k, b := range c.Base {
		if !validSum(b.SHA256) || b.Stored <= 0 || b.Len < pageSize || b.Len > 2*maxChunkSize || b.Stored > b.Len+b.Len/8+1024 {
			return fmt.Errorf("%s: base %d: sha256 %q, %d stored bytes for %d", where, k, b.SHA256, b.Stored, b.Len)
		}
	}
	return nil
}

// validSum reports whether s is a sha256 in lower-case hex: the only form
// a chunk's name in a store may take.
func validSum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checkBlob(what string, b Blob, dataEnd int64) error {
	if b.At < HeaderSize || b.Size <= 0 || b.At+b.Size > dataEnd || b.At+b.Size < b.At {
		return fmt.Errorf("bundle: index: %s: bytes %d+%d outside the data area %d..%d", what, b.At, b.Size, HeaderSize, dataEnd)
	}
	if h, err := hex.DecodeString(b.SHA256); err != nil || len(h) != 32 {
		return fmt.Errorf("bundle: index: %s: sha256 %q is not 64 hex digits", what, b.SHA256)
	}
	return nil
}

// trailer is the fixed end of a bundle.
type trailer struct {
	IndexAt, IndexSize, SigAt, SigSize int64
	Version                            int
}

func (t trailer) encode(version int) []byte {
	b := make([]byte, TrailerSize)
	copy(b, trailerMagic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], uint64(t.IndexAt))
	le.PutUint64(b[16:], uint64(t.IndexSize))
	le.PutUint64(b[24:], uint64(t.SigAt))
	le.PutUint64(b[32:], uint64(t.SigSize))
	le.PutUint32(b[40:], uint32(version))
	return b
}

func parseTrailer(b []byte, size int64) (trailer, error) {
	if string(b[:8]) != trailerMagic {
		return trailer{}, fmt.Errorf("bundle: no trailer at byte %d (magic %q): not a thaw bundle, or truncated", size-TrailerSize, b[:8])
	}
	le := binary.LittleEndian
	v := le.Uint32(b[40:])
	if v != FormatVersion && v != StoreVersion {
		return trailer{}, fmt.Errorf("bundle: trailer: format version %d, this thaw reads %d and %d", v, FormatVersion, StoreVersion)
	}
	t := trailer{int64(le.Uint64(b[8:])), int64(le.Uint64(b[16:])), int64(le.Uint64(b[24:])), int64(le.Uint64(b[32:])), int(v)}
	end := size - TrailerSize
	switch {
	case t.IndexSize <= 0 || t.IndexSize > maxIndexSize:
		return t, fmt.Errorf("bundle: trailer: index size %d outside 1..%d", t.IndexSize, maxIndexSize)
	case t.SigSize < 0 || t.SigSize > maxSigSize:
		return t, fmt.Errorf("bundle: trailer: signature size %d outside 0..%d", t.SigSize, maxSigSize)
	case t.IndexAt < HeaderSize || t.IndexAt+t.IndexSize != t.SigAt || t.SigAt+t.SigSize != end:
		return t, fmt.Errorf("bundle: trailer: index at %d+%d and signature at %d+%d do not end at the trailer (byte %d): truncated or damaged", t.IndexAt, t.IndexSize, t.SigAt, t.SigSize, end)
	}
	return t, nil
}
