package bundle

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"
)

// StoreChunks is the index's "store" of a version 2 bundle: its chunks are
// objects in the chunks/ directory beside the bundle object.
const StoreChunks = "chunks"

// SchemeStore is the encryption of a version 2 bundle's chunks. The data
// key is a chunk key that captures may share (thaw keygen --chunk-key), so
// that equal plaintext gives equal stored bytes and a store keeps one copy:
// each chunk is sealed with XChaCha20-Poly1305 under a key derived from it,
// with a synthetic nonce, the HMAC-SHA256 of the compressed plaintext
// under a second derived key (SIV). The store learns which chunks are equal
// among bundles that share a chunk key, and nothing else of their content.
// age (X25519) wraps the chunk key for each recipient, as for SchemeAge.
const SchemeStore = "age-x25519/xchacha20poly1305-siv"

// ChunkKeySize is the size of a chunk key.
const ChunkKeySize = 32

// ChunkPath is where a stored chunk lives, relative to the directory (or
// prefix) of the bundle objects that name it: chunks/ab/abcd….
func ChunkPath(sum string) string {
	return StoreChunks + "/" + sum[:2] + "/" + sum
}

// ChunkSource reads a stored chunk of a version 2 bundle by its sha256
// (over the stored bytes): it fills p, whose length is the chunk's stored
// size. The Reader checks the bytes against the signed index.
type ChunkSource interface {
	ReadChunk(ctx context.Context, sum string, p []byte) error
}

// DirSource reads chunks from a directory laid out as ChunkPath says: the
// directory of a bundle object in a local store.
type DirSource string

// ReadChunk reads the chunk's file, which must hold exactly len(p) bytes.
func (d DirSource) ReadChunk(ctx context.Context, sum string, p []byte) error {
	path := filepath.Join(string(d), filepath.FromSlash(ChunkPath(sum)))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.ReadFull(f, p); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return fmt.Errorf("%s: longer than the %d bytes the index says", path, len(p))
	}
	return nil
}

// siv seals chunks deterministically (SchemeStore).
type siv struct {
	mac  []byte // the nonce's HMAC key
	aead interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	}
}

const sivNonce = chacha20poly1305.NonceSizeX

func newSIV(chunkKey []byte) (*siv, error) {
	if len(chunkKey) != ChunkKeySize {
		return nil, fmt.Errorf("bundle: chunk key of %d bytes, want %d", len(chunkKey), ChunkKeySize)
	}
	ek, err := hkdf.Key(sha256.New, chunkKey, nil, "thaw chunk seal", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	mk, err := hkdf.Key(sha256.New, chunkKey, nil, "thaw chunk nonce", 32)
	if err != nil {
		return nil, err
	}
	a, err := chacha20poly1305.NewX(ek)
	clear(ek)
	if err != nil {
		return nil, err
	}
	return &siv{mac: mk, aead: a}, nil
}

func (k *siv) nonce(plain []byte) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write(plain)
	return m.Sum(nil)[:sivNonce]
}

// seal appends nonce ‖ ciphertext of plain to dst.
func (k *siv) seal(dst, plain []byte) []byte {
	n := k.nonce(plain)
	dst = append(dst, n...)
	return k.aead.Seal(dst, n, plain, nil)
}

// open decrypts stored into dst and checks that its nonce is the one its
// plaintext gives.
func (k *siv) open(dst, stored []byte) ([]byte, error) {
	if len(stored) < sivNonce {
		return nil, errors.New("shorter than its nonce")
	}
	plain, err := k.aead.Open(dst, stored[:sivNonce], stored[sivNonce:], nil)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(k.nonce(plain), stored[:sivNonce]) != 1 {
		return nil, errors.New("synthetic nonce does not match the plaintext")
	}
	return plain, nil
}

// Content-defined cuts of memory streams in a store. A memory stream is
// the kernel's list of saved pages, in frame order: a page freed or taken
// between two captures shifts every later page, and fixed-size chunks
// would then all differ. Cutting after a page whose CRC-32C ends in
// cdcBits zero bits (at least cdcMin bytes in, at most the chunk size)
// puts the cuts where the content says, so they fall at the same pages
// again after the shift and the chunks after it are shared.
const (
	cdcBits = 8 // about 256 pages past the minimum: 2 MiB chunks on average
	cdcMin  = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// cdcCut returns where to cut buf (a whole number of pages, or its end
// when final): the length of the next chunk, or 0 for "wait for more".
func cdcCut(buf []byte, limit int, final bool) int {
	lo := max(4096, min(cdcMin, limit/4)&^4095)
	for end := lo; end <= len(buf); end += 4096 {
		if crc32.Checksum(buf[end-4096:end], castagnoli)&(1<<cdcBits-1) == 0 {
			return end
		}
	}
	if len(buf) >= limit || final {
		return min(len(buf), limit)
	}
	return 0
}

// ChunkSums lists the distinct stored chunks the bundle names, in index
// order: its chunks and the bases of its page deltas.
func (br *Reader) ChunkSums() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range br.Index.Streams {
		for _, c := range s.Chunks {
			if !c.Zero && !seen[c.SHA256] {
				seen[c.SHA256] = true
				out = append(out, c.SHA256)
			}
			for _, b := range c.Base {
				if !seen[b.SHA256] {
					seen[b.SHA256] = true
					out = append(out, b.SHA256)
				}
			}
		}
	}
	return out
}

// StoreObjectChunks lists the chunks a version 2 bundle object of size
// bytes names, read unverified (for a store's bookkeeping: what to keep,
// what to copy along); nil, nil when r holds no such object (a version 1
// bundle, any other file).
func StoreObjectChunks(r io.ReaderAt, size int64) ([]string, error) {
	head := make([]byte, HeaderSize)
	if n, _ := r.ReadAt(head, 0); n < len(head) || !IsStoreObject(head) {
		return nil, nil
	}
	br, err := Open(r, size, nil)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	return br.ChunkSums(), nil
}

// IsStoreObject reports whether head (the first HeaderSize bytes of a
// file) starts a version 2 bundle object, whose chunks are in a store.
func IsStoreObject(head []byte) bool {
	return len(head) >= HeaderSize && string(head[:8]) == headerMagic && head[8] == StoreVersion
}
