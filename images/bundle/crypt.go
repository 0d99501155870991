package bundle

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// SchemeAge is the encryption of a bundle's chunks: a random 256-bit data
// key seals every stored chunk with ChaCha20-Poly1305, and age (X25519)
// wraps the data key for each recipient.
const SchemeAge = "age-x25519/chacha20poly1305"

// maxKeyBlob bounds the wrapped data key (an age file: a header line per
// recipient).
const maxKeyBlob = 64 << 10

// Encryption is the index's record of how the chunks are encrypted. It is
// signed with the index, so the recipients cannot be swapped.
type Encryption struct {
	Scheme     string   `json:"scheme"`
	Recipients []string `json:"recipients"` // age1… public keys
	Key        Blob     `json:"key"`        // the age file that wraps the data key
}

// ErrEncrypted is an encrypted bundle read without a matching identity.
var ErrEncrypted = errors.New("bundle: encrypted")

// Chunk sealing. The nonce is the stream's position in the index and the
// chunk's; the additional data binds the sealed bytes to the stream's name
// and the chunk's place in it, so that no chunk can be moved to another.
func chunkNonce(stream, chunk int) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.LittleEndian.PutUint32(n, uint32(stream))
	binary.LittleEndian.PutUint64(n[4:], uint64(chunk))
	return n
}

func chunkAAD(name string, c Chunk) []byte {
	b := make([]byte, 0, len(name)+17)
	b = append(b, name...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(c.Off))
	return binary.LittleEndian.AppendUint64(b, uint64(c.Len))
}

// newDataKey makes a data key and wraps it for the recipients.
func newDataKey(recipients []*age.X25519Recipient) (cipher.AEAD, []byte, []string, error) {
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, nil, fmt.Errorf("bundle: data key: %w", err)
	}
	defer clear(key)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, nil, nil, err
	}
	wrapped, names, err := wrapKey(key, recipients)
	return aead, wrapped, names, err
}

// newChunkKey wraps a chunk key (a random one if nil) for the recipients.
func newChunkKey(key []byte, recipients []*age.X25519Recipient) (*siv, []byte, []string, error) {
	if key == nil {
		key = make([]byte, ChunkKeySize)
		defer clear(key)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, nil, fmt.Errorf("bundle: chunk key: %w", err)
		}
	}
	k, err := newSIV(key)
	if err != nil {
		return nil, nil, nil, err
	}
	wrapped, names, err := wrapKey(key, recipients)
	return k, wrapped, names, err
}

// wrapKey encrypts key to the recipients as an age file.
func wrapKey(key []byte, recipients []*age.X25519Recipient) ([]byte, []string, error) {
	var wrapped bytes.Buffer
	var rs []age.Recipient
	var names []string
	for _, r := range recipients {
		rs = append(rs, r)
		names = append(names, r.String())
	}
	w, err := age.Encrypt(&wrapped, rs...)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle: wrapping the data key: %w", err)
	}
	w.Write(key)
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("bundle: wrapping the data key: %w", err)
	}
	return wrapped.Bytes(), names, nil
}

// Encrypted reports whether the bundle's chunks are encrypted.
func (br *Reader) Encrypted() bool { return br.Index.Encryption != nil }

// Recipients are the public keys the bundle is encrypted to.
func (br *Reader) Recipients() []string {
	if br.Index.Encryption == nil {
		return nil
	}
	return br.Index.Encryption.Recipients
}

// Unlock unwraps the data key with one of the identities; the chunks can
// then be read. An unencrypted bundle needs none. With no identity that
// matches, the error wraps ErrEncrypted and names the recipients.
func (br *Reader) Unlock(ids ...age.Identity) error {
	e := br.Index.Encryption
	if e == nil || br.aead != nil || br.siv != nil {
		return nil
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w to %s: give an identity for one of them (--identity FILE, or one baked into the agent)", ErrEncrypted, strings.Join(e.Recipients, ", "))
	}
	blob := make([]byte, e.Key.Size)
	if _, err := br.r.ReadAt(blob, e.Key.At); err != nil {
		return fmt.Errorf("bundle: the wrapped data key at byte %d: %w", e.Key.At, err)
	}
	if sum := sha256.Sum256(blob); hex.EncodeToString(sum[:]) != e.Key.SHA256 {
		return fmt.Errorf("bundle: the wrapped data key at byte %d: sha256 mismatch: the bundle is damaged", e.Key.At)
	}
	r, err := age.Decrypt(bytes.NewReader(blob), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return fmt.Errorf("%w to %s: none of the %d identities given is one of them", ErrEncrypted, strings.Join(e.Recipients, ", "), len(ids))
		}
		return fmt.Errorf("bundle: unwrapping the data key: %w", err)
	}
	key := make([]byte, chacha20poly1305.KeySize+1)
	n, _ := io.ReadFull(r, key)
	defer clear(key)
	if n != chacha20poly1305.KeySize {
		return fmt.Errorf("bundle: the wrapped data key holds %d bytes, want %d", n, chacha20poly1305.KeySize)
	}
	if e.Scheme == SchemeStore {
		br.siv, err = newSIV(key[:n])
		return err
	}
	br.aead, err = chacha20poly1305.New(key[:n])
	return err
}

// checkEncryption checks the index's encryption record.
func checkEncryption(e *Encryption, version int, dataEnd int64) error {
	if e == nil {
		return nil
	}
	want := SchemeAge
	if version == StoreVersion {
		want = SchemeStore
	}
	if e.Scheme != want {
		return fmt.Errorf("bundle: index: encryption scheme %q, a version %d bundle has %q", e.Scheme, version, want)
	}
	if len(e.Recipients) == 0 {
		return errors.New("bundle: index: encrypted to no recipient")
	}
	if e.Key.Size > maxKeyBlob {
		return fmt.Errorf("bundle: index: wrapped data key of %d bytes, more than %d", e.Key.Size, maxKeyBlob)
	}
	return checkBlob("encryption key", e.Key, dataEnd)
}

// GenerateIdentity makes an age X25519 key pair: the identity's text
// (secret) and the recipient's (public), each a line.
func GenerateIdentity() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	return id.String(), id.Recipient().String(), nil
}

// LoadRecipients reads age X25519 recipients (age1…), one per line; #
// starts a comment.
func LoadRecipients(path string) ([]*age.X25519Recipient, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipient: %w", err)
	}
	var out []*age.X25519Recipient
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := age.ParseX25519Recipient(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w (want an age1… recipient, as thaw keygen --recipient writes)", path, i+1, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no recipient", path)
	}
	return out, nil
}

// LoadIdentities reads age identities (AGE-SECRET-KEY-1…).
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return ids, nil
}
