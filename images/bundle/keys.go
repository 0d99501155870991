package bundle

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"aead.dev/minisign"
)

// LoadPrivateKey reads a minisign secret key file, unencrypted (minisign -W,
// thaw keygen) or encrypted with password.
func LoadPrivateKey(path, password string) (minisign.PrivateKey, error) {
	var key minisign.PrivateKey
	b, err := os.ReadFile(path)
	if err != nil {
		return key, fmt.Errorf("signing key: %w", err)
	}
	if minisign.IsEncrypted(b) {
		if password == "" {
			return key, fmt.Errorf("signing key %s is encrypted: give its password (THAW_KEY_PASSWORD)", path)
		}
		key, err = minisign.DecryptKey(password, b)
	} else {
		err = key.UnmarshalText(bytes.TrimSpace(b))
	}
	if err != nil {
		return key, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKey accepts a minisign public key file's contents or just its
// key line (as thaw.pubkey= carries it).
func ParsePublicKey(text string) (minisign.PublicKey, error) {
	var pub minisign.PublicKey
	lines := strings.Split(strings.TrimSpace(text), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if err := pub.UnmarshalText([]byte("untrusted comment: \n" + line)); err != nil {
		return pub, fmt.Errorf("public key %q: %w", line, err)
	}
	return pub, nil
}

// LoadPublicKey reads a minisign public key file.
func LoadPublicKey(path string) (minisign.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return minisign.PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	pub, err := ParsePublicKey(string(b))
	if err != nil {
		return pub, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// chunkKeyHeader starts a chunk key file.
const chunkKeyHeader = "# thaw chunk key: seals the chunks of bundles in a store; captures that share it share their equal chunks. Secret.\n"

// GenerateChunkKey makes a chunk key file's text.
func GenerateChunkKey() (string, error) {
	k := make([]byte, ChunkKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return chunkKeyHeader + hex.EncodeToString(k) + "\n", nil
}

// LoadChunkKey reads a chunk key file (thaw keygen --chunk-key): a line of
// 64 hex digits; # starts a comment.
func LoadChunkKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chunk key: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := hex.DecodeString(line)
		if err != nil || len(k) != ChunkKeySize {
			return nil, fmt.Errorf("chunk key %s: want a line of %d hex digits, as thaw keygen --chunk-key writes", path, 2*ChunkKeySize)
		}
		return k, nil
	}
	return nil, fmt.Errorf("chunk key %s holds no key", path)
}
