package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const keygenHelp = `
Makes a minisign key pair: PREFIX.key signs bundles (thaw capture, thaw
export), PREFIX.pub verifies them (thaw restore --pubkey, the agent's
thaw.pubkey=). Both files are in minisign's format: the minisign tool reads
them. The secret key is written unencrypted, for unattended capture, unless
--password is given; then the password comes from THAW_KEY_PASSWORD.

With --recipient it makes an encryption key pair instead (age X25519):
PREFIX.recipient (public, age1…) encrypts bundles (thaw capture and thaw
export --recipient), PREFIX.identity (secret, mode 0600) decrypts them
(thaw restore, plan and inspect --identity; baked into the agent with
mkinitramfs -identity). The age tool reads both.

With --chunk-key it makes PREFIX.chunkkey (secret, mode 0600): the key that
seals the chunks of bundles captured into a store (thaw capture
--chunk-key). Captures that share it store their equal chunks once: give
one to every server of a fleet whose bundles should share a store.

Existing files are never overwritten.
`

// writeNew writes a key file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("%w (keys are never overwritten)", err)
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// recipientFlags are --recipient FILE (repeatable) and --plaintext, as
// capture and export take them.
type recipientFlags struct {
	files     multiFlag
	plaintext *bool
}

func addRecipientFlags(fs *flag.FlagSet) *recipientFlags {
	r := &recipientFlags{}
	fs.Var(&r.files, "recipient", "age recipient file (thaw keygen --recipient): encrypt the bundle to it (repeat for several)")
	r.plaintext = fs.Bool("plaintext", false, "write the bundle unencrypted: for a lab only, the bundle holds the server's RAM")
	return r
}

// load reads the recipients, or refuses a bundle that would be neither
// encrypted nor knowingly plaintext.
func (r *recipientFlags) load() ([]*age.X25519Recipient, error) {
	switch {
	case len(r.files) > 0 && *r.plaintext:
		return nil, &exitError{2, errors.New("--recipient and --plaintext exclude each other")}
	case len(r.files) == 0 && !*r.plaintext:
		return nil, &exitError{2, errors.New("the bundle would hold the server's RAM in plaintext: give --recipient FILE (thaw keygen --recipient --out PREFIX makes one), or --plaintext for a lab")}
	}
	var out []*age.X25519Recipient
	for _, f := range r.files {
		rs, err := bundle.LoadRecipients(f)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// identityFlags are --identity FILE (repeatable), as restore, plan and
// inspect take them.
func addIdentityFlag(fs *flag.FlagSet) *multiFlag {
	var m multiFlag
	fs.Var(&m, "identity", "age identity file (thaw keygen --recipient) that decrypts an encrypted bundle (repeat)")
	return &m
}

func loadIdentities(files []string) ([]age.Identity, error) {
	var out []age.Identity
	for _, f := range files {
		ids, err := bundle.LoadIdentities(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ids...)
	}
	return out, nil
}

func runKeygen(args []string) error {
	fs := newFlags("keygen", "--out PREFIX [--password]", keygenHelp)
	out := fs.String("out", "", "path prefix of the key files")
	withPass := fs.Bool("password", false, "encrypt the secret key with the password in THAW_KEY_PASSWORD")
	recipient := fs.Bool("recipient", false, "make an encryption key pair (PREFIX.identity, PREFIX.recipient) instead of a signing one")
	chunkKey := fs.Bool("chunk-key", false, "make a chunk key (PREFIX.chunkkey) instead of a signing key pair")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return &exitError{2, errors.New("--out is required")}
	}
	if *chunkKey {
		text, err := bundle.GenerateChunkKey()
		if err != nil {
			return err
		}
		if err := writeNew(*out+".chunkkey", []byte(text), 0o600); err != nil {
			return err
		}
		fmt.Printf("secret chunk key %s.chunkkey\n", *out)
		return nil
	}
	if *recipient {
		id, rcp, err := bundle.GenerateIdentity()
		if err != nil {
			return err
		}
		if err := writeNew(*out+".identity", []byte("# thaw identity: decrypts bundles encrypted to "+rcp+"\n"+id+"\n"), 0o600); err != nil {
			return err
		}
		if err := writeNew(*out+".recipient", []byte(rcp+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Printf("recipient %s\nsecret identity %s.identity, public recipient %s.recipient\n", rcp, *out, *out)
		return nil
	}
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return err
	}
	var keyText []byte
	if *withPass {
		pw := os.Getenv("THAW_KEY_PASSWORD")
		if pw == "" {
			return &exitError{2, errors.New("--password: set THAW_KEY_PASSWORD")}
		}
		if keyText, err = minisign.EncryptKey(pw, priv); err != nil {
			return err
		}
	} else if keyText, err = priv.MarshalText(); err != nil {
		return err
	}
	pubText, _ := pub.MarshalText()
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{*out + ".key", keyText, 0o600}, {*out + ".pub", pubText, 0o644}} {
		if err := writeNew(f.path, append(bytes.TrimRight(f.data, "\n"), '\n'), f.perm); err != nil {
			return err
		}
	}
	fmt.Printf("key %016X: secret %s.key, public %s.pub\npublic key line (thaw.pubkey=): %s\n", pub.ID(), *out, *out, pub.String())
	return nil
}

const exportHelp = `
Turns a machine that hibernated by itself (systemctl hibernate) into a
signed bundle: the image its kernel wrote to the swap area --from, the whole
disks that hold its filesystems (--disk, default: the disk of --from), and,
when given, its kernel and initrd. Run it from a rescue system or with the
disks attached elsewhere; nothing is mounted and nothing is written to the
source. The image is verified whole before anything is sent.

--to is a file (written to FILE.partial, then renamed) or an http(s) URL
(streamed with PUT to thaw serve, with the token of --token-file).
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runExport(args []string) error {
	fs := newFlags("export", "--from DEV|PATH#N --to FILE|URL --key FILE [--disk DEV ...]", exportHelp)
	from := fs.String("from", "", "the swap area holding the kernel-written image (DEV or PATH#N)")
	to := fs.String("to", "", "where the bundle goes: a file, an http(s) URL, or s3://BUCKET/PREFIX/NAME (a version 2 bundle: only the chunks the bucket lacks are sent)")
	s3Endpoint := fs.String("s3-endpoint", "", "for s3://: the S3 endpoint, http(s)://HOST[:PORT] (default: AWS_ENDPOINT_URL, else AWS S3 in AWS_REGION)")
	keyPath := fs.String("key", "", "minisign secret key that signs the bundle")
	tokenFile := fs.String("token-file", "", "file holding the bearer token for an http(s) --to")
	rcpt := addRecipientFlags(fs)
	resumeOff := fs.Int64("resume-offset", 0, "resume_offset of the image's swap header inside --from, in pages")
	kernel := fs.String("kernel", "", "the image kernel's vmlinuz, carried in the bundle")
	initrd := fs.String("initrd", "", "the image kernel's initrd, carried in the bundle")
	var disks multiFlag
	fs.Var(&disks, "disk", "a whole disk of the source to carry (repeat; default: the disk holding --from)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" || *keyPath == "" {
		fs.Usage()
		return &exitError{2, errors.New("--from, --to and --key are required")}
	}
	key, err := bundle.LoadPrivateKey(*keyPath, os.Getenv("THAW_KEY_PASSWORD"))
	if err != nil {
		return err
	}
	recipients, err := rcpt.load()
	if err != nil {
		return err
	}
	start := time.Now()
	res, src, r, err := openVerifiedImage(*from, *resumeOff)
	if err != nil {
		return err
	}
	defer src.Close()
	if len(disks) == 0 {
		disks = []string{src.Path}
	}
	m := &manifest.Manifest{Version: manifest.Version, Kind: "export", Created: time.Now().UTC().Format(time.RFC3339),
		Kernel:      manifest.Kernel{Release: res.Kernel.Release, Version: res.Kernel.Banner},
		E820Digest:  res.Arch.E820Checksum,
		MemoryBytes: res.Pages.Machine * swsusp.PageSize,
		Image: &manifest.Image{Release: res.Kernel.Release, Pages: res.Pages.Total, DataPages: res.Pages.Data, ZeroPages: res.Pages.Zero,
			MetaPages: res.Pages.Metadata, NumPhysPages: res.Pages.Machine, E820Checksum: res.Arch.E820Checksum, Stream: "memory",
			Platform: res.Flags&swsusp.FlagPlatformMode != 0}}
	for i, d := range disks {
		md, err := probe.DescribeDisk(d)
		if err != nil {
			return err
		}
		md.Stream = fmt.Sprintf("disk%d", i)
		if md.Path == src.Path {
			m.Resume = &manifest.Resume{Disk: i, Partition: src.Partition, PartUUID: src.PartUUID, HeaderOffset: src.Offset + *resumeOff*swsusp.PageSize, InDisk: true}
		}
		m.Disks = append(m.Disks, *md)
	}
	if m.Resume == nil {
		return &exitError{2, fmt.Errorf("the image's swap area %s is on none of the disks given (%v): the bundle must carry it", *from, disks)}
	}
	if err := m.Check(); err != nil {
		return err
	}
	wo := bundle.WriterOptions{Recipients: recipients}
	var out io.Writer
	var finish func() error
	var abort func()
	if s3.IsURL(*to) {
		// A bucket: a version 2 bundle, each chunk an object, stored
		// only if the bucket lacks it, the bundle object last.
		out, abort = io.Discard, func() {}
		o, err := s3.Parse(*to, "export.thaw")
		if err != nil {
			return &exitError{2, err}
		}
		c, err := s3Client(*s3Endpoint, "", nil)
		if err != nil {
			return err
		}
		have, err := c.Chunks(context.Background(), o)
		if err != nil {
			return err
		}
		up := s3.NewUploader(context.Background(), c, o, 4)
		wo.Store = &bundle.StoreOptions{Have: func(sum string) bool { return have[sum] }, Records: up}
		finish = up.Wait
	} else if out, finish, abort, err = openOutput(*to, *tokenFile); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			abort()
		}
	}()
	bw, err := bundle.NewWriter(out, wo)
	if err != nil {
		return err
	}
	copyStream := func(name, kind string, r io.Reader) error {
		sw, err := bw.Stream(name, kind)
		if err != nil {
			return err
		}
		n, err := sw.ReadFrom(r)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "export: %-8s %6d MiB\n", name, n>>20)
		return sw.Close()
	}
	if err := copyStream("memory", bundle.KindMemory, r.Stream()); err != nil {
		return err
	}
	for i, d := range disks {
		dev, err := blockdev.Open(d, false)
		if err != nil {
			return err
		}
		err = copyStream(fmt.Sprintf("disk%d", i), bundle.KindDisk, io.NewSectionReader(dev, 0, dev.Size))
		dev.Close()
		if err != nil {
			return err
		}
	}
	for name, path := range map[string]string{"vmlinuz": *kernel, "initrd": *initrd} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = copyStream(name, bundle.KindFile, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	ix, err := bw.Finish(m, &key)
	if err != nil {
		return err
	}
	if err := finish(); err != nil {
		return err
	}
	done = true
	var stored int64
	for _, s := range ix.Streams {
		stored += s.StoredSize()
	}
	fmt.Printf("exported %s (kernel %s, %d memory pages, %d disk(s)) to %s: %d MiB stored, signed by key %016X (%.1fs)\n",
		*from, m.Kernel.Release, m.Image.Pages, len(m.Disks), *to, stored>>20, key.ID(), time.Since(start).Seconds())
	return nil
}

// openOutput opens where a bundle goes (a file or a URL). finish completes it; abort (after
// a failure) removes what was written to a file. An upload that does not
// finish is never stored by thaw serve.
func openOutput(to, tokenFile string) (w io.Writer, finish func() error, abort func(), err error) {
	if strings.HasPrefix(to, "http://") || strings.HasPrefix(to, "https://") {
		token, err := readToken(tokenFile)
		if err != nil {
			return nil, nil, nil, err
		}
		w, finish, err := openUpload(context.Background(), to, token)
		return w, finish, func() {}, err
	}
	// The bundle holds the server's RAM: readable by its owner only,
	// written beside the old one and renamed over it once synced.
	f, tmp, err := createPartial(to, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	abort = func() { f.Close(); os.Remove(tmp) }
	return f, func() error { return commitPartial(f, tmp, to) }, abort, nil
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// openBundleLocked opens a bundle file or URL; pub nil opens it unverified. A
// reference ending in #sha256=DIGEST must name the bundle whose index
// has that digest.
//
// An encrypted bundle is unlocked with the identities given; without one
// that matches, the error wraps bundle.ErrEncrypted and names the
// recipients (locked: unlocking is left to the caller).
func openBundleLocked(ref, token string, pub *minisign.PublicKey, ids []age.Identity, locked bool) (*bundle.Reader, func(), error) {
	ref, pin, err := bundle.SplitPin(ref)
	if err != nil {
		return nil, nil, err
	}
	var chunks bundle.ChunkSource
	if s3.IsURL(ref) {
		if ref, chunks, err = s3Bundle(ref); err != nil {
			return nil, nil, err
		}
		token = ""
	} else if u, c, ok, err := presignedList(ref); err != nil {
		return nil, nil, err
	} else if ok {
		ref, chunks, token = u, c, ""
	}
	br, closeFn, err := openBundleRef(ref, token, pub)
	if err != nil {
		return nil, nil, err
	}
	if br.InStore() {
		if chunks == nil {
			chunks = restore.ChunksBeside(restore.Files{}, ref, httpra.Options{Token: token})
		}
		br.SetChunkSource(chunks)
	}
	if err := bundle.CheckPin(br, pin); err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	if err := br.Unlock(ids...); err != nil && !locked {
		closeFn()
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	return br, closeFn, nil
}

func openBundleRef(ref, token string, pub *minisign.PublicKey) (*bundle.Reader, func(), error) {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return openBundleURL(ref, token, pub)
	}
	f, err := os.Open(ref)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	br, err := bundle.Open(f, st.Size(), pub)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	return br, func() { br.Close(); f.Close() }, nil
}
