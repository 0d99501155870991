package bundle

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"aead.dev/minisign"
	"filippo.io/age"
	"github.com/thawlinux/thaw/images/manifest"
)

func recipientPair(t *testing.T) (*age.X25519Identity, *age.X25519Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient()
}

func writeEncrypted(t *testing.T, key *minisign.PrivateKey, ss []streamSpec, rs ...*age.X25519Recipient) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, WriterOptions{ChunkSize: 16384, Recipients: rs})
	if err != nil {
		t.Fatal(err)
	}
	w.Warm()
	for _, s := range ss {
		sw, _ := w.Stream(s.name, s.kind)
		sw.ReadFrom(bytes.NewReader(s.data))
		sw.Close()
	}
	m := &manifest.Manifest{Version: manifest.Version, Kind: "export", Kernel: manifest.Kernel{Release: "6.12.0-test"}}
	if _, err := w.Finish(m, key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// An encrypted bundle: a marker planted in its data appears in no stored
// byte; only an identity of a recipient reads it; without one the stored
// hashes still check, and the error names the recipients.
func TestEncryptedRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	id1, r1 := recipientPair(t)
	id2, r2 := recipientPair(t)
	other, _ := recipientPair(t)
	marker := []byte("THAW-MARKER-IN-RAM-0123456789")
	ss := specs()
	for i := 0; i+len(marker) < len(ss[0].data); i += 20000 {
		copy(ss[0].data[i:], marker)
	}
	b := writeEncrypted(t, &priv, ss, r1, r2)
	if bytes.Contains(b, marker) {
		t.Fatal("the plaintext marker is in the encrypted bundle")
	}
	if plain := writeBundle(t, &priv, ss); !bytes.Contains(plain, marker) {
		t.Log("(the marker does not survive compression in a plaintext bundle either)")
	}
	br, err := Open(bytes.NewReader(b), int64(len(b)), &pub)
	if err != nil {
		t.Fatal(err)
	}
	if !br.Encrypted() || len(br.Recipients()) != 2 || br.Recipients()[0] != r1.String() {
		t.Fatalf("recipients %v", br.Recipients())
	}
	if _, err := br.ReadChunk(br.Index.Streams[0], 0, nil); !errors.Is(err, ErrEncrypted) {
		t.Fatalf("a chunk read while locked: %v", err)
	}
	if err := br.VerifyStored(nil); err != nil {
		t.Fatalf("VerifyStored without an identity: %v", err)
	}
	if err := br.Unlock(); !errors.Is(err, ErrEncrypted) || !strings.Contains(err.Error(), r2.String()) {
		t.Fatalf("Unlock with no identity: %v", err)
	}
	if err := br.Unlock(other); !errors.Is(err, ErrEncrypted) || !strings.Contains(err.Error(), r1.String()) {
		t.Fatalf("Unlock with another identity: %v", err)
	}
	for _, id := range []age.Identity{id1, id2} {
		br, _ := Open(bytes.NewReader(b), int64(len(b)), &pub)
		if err := br.Unlock(other, id); err != nil {
			t.Fatal(err)
		}
		if err := br.Verify(nil); err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			sr, _ := br.OpenStream(s.name)
			got, err := io.ReadAll(sr)
			if err != nil || !bytes.Equal(got, s.data) {
				t.Fatalf("stream %s: %v", s.name, err)
			}
		}
	}
}

// A sealed chunk is bound to its place: two stored chunks swapped, with
// the index edited to match their hashes, no longer decrypt (the index's
// signature aside, which would catch the edit).
func TestEncryptedChunkBoundToPlace(t *testing.T) {
	_, priv := testKey(t)
	id, r := recipientPair(t)
	b := writeEncrypted(t, &priv, specs(), r)
	br, _ := Open(bytes.NewReader(b), int64(len(b)), nil)
	br.Unlock(id)
	mem := br.Index.Streams[0]
	c0, c1 := mem.Chunks[0], mem.Chunks[1]
	// Read chunk 1's stored bytes as if they were chunk 0's.
	mem.Chunks[0].At, mem.Chunks[0].Stored, mem.Chunks[0].SHA256 = c1.At, c1.Stored, c1.SHA256
	if _, err := br.ReadChunk(mem, 0, nil); err == nil || !strings.Contains(err.Error(), "decryption") {
		t.Fatalf("chunk 1's bytes read as chunk 0: %v", err)
	}
	mem.Chunks[0] = c0
	if _, err := br.ReadChunk(mem, 0, nil); err != nil {
		t.Fatal(err)
	}
}
