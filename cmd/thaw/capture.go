package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/thawlinux/thaw/agent/capture"
	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const captureHelp = `
Hibernates this machine into a signed bundle, as root, while it runs:

  1 profile the machine (thaw probe) and choose the disks: by default those
    behind mounted filesystems and active swap (--disks auto), or a list,
    or none when the storage is shared
  2 reserve the mailbox (locked memory the restore agent can write to);
    swap stays in use: the kernel may swap out to make room for the image,
    and what swap holds travels in the disk streams byte for byte, so the
    resume image later goes to an area that is not a swap of the image
    (thaw restore --resume), or is restored directly by the agent
  3 freeze user space through /dev/snapshot, create the image, stream memory
    then the disks (read while frozen: consistent) into the bundle, signed
    with --key and encrypted to --recipient (age X25519; --plaintext for a
    lab), to a file on a disk that is not captured or by HTTP PUT to
    thaw serve with the bearer token of --token-file: over https
    (thaw serve --tls-cert; the connection and its TLS handshake are made
    before the freeze, and TLS goes on while the machine is frozen), or
    plain http, where the token crosses the network in clear: give the
    source a one-use token for its one bundle then (thaw grant).
    Or into an S3-compatible bucket, s3://BUCKET/PREFIX/NAME (NAME
    defaults to HOSTNAME.thaw): each chunk is an object
    PREFIX/chunks/ab/SUM, and the bundle object is stored last, once every
    chunk is; each request is signed (SigV4) with AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials), at --s3-endpoint or
    AWS_ENDPOINT_URL (path-style), in AWS_REGION. thaw presign then lets
    a restore agent read it.
    A store keeps chunks by their hash: before the freeze the capture asks
    which it has, and sends only the others. Encrypted chunks are sealed
    with the chunk key (--chunk-key), so that captures sharing it share
    their equal chunks: this server's earlier captures, and a fleet's
    servers given the same key. With --precopy the disks' chunks the
    store lacks go first, while the machine runs (at most --rate MiB a
    second read from the disks); the frozen phase reads the disks again
    and sends only the chunks that changed since. The memory is stored as
    page deltas against this server's previous capture in the same store
    (named in /var/lib/thaw/last-capture, or --base): only the pages that
    are not in it already are sent
  4 power off once the bundle is complete (and, for a URL, acknowledged)

When the bundle is resumed later, this command continues where it froze:
it checks the mailbox, unfreezes, logs that it resumed and exits 0. Any
failure before the power-off unfreezes the machine. --dry-run does
everything except the freeze.
`

func runCapture(args []string) error {
	fs := newFlags("capture", "--to FILE|URL|s3://BUCKET/PREFIX/NAME [--s3-endpoint URL] --key FILE --recipient FILE|--plaintext [--token-file FILE] [--ca-file FILE] [--chunk-key FILE] [--precopy [--rate MIB]] [--base NAME|none] [--disks auto|none|DEV,…] [--dry-run]", captureHelp)
	to := fs.String("to", "", "where the bundle goes: a file (not on a captured disk), an https:// (or http://) URL of thaw serve, or s3://BUCKET/PREFIX/[NAME]")
	caFile := fs.String("ca-file", "", "PEM file of the CAs that sign the store's certificate, for an https:// or s3:// --to (default: the system's)")
	s3Endpoint := fs.String("s3-endpoint", "", "for s3://: the S3 endpoint, http(s)://HOST[:PORT] (default: AWS_ENDPOINT_URL, else AWS S3 in AWS_REGION)")
	keyPath := fs.String("key", "", "minisign secret key that signs the bundle (THAW_KEY_PASSWORD if encrypted)")
	tokenFile := fs.String("token-file", "", "bearer token file for a URL --to: the store's write token, or a one-use token from thaw grant")
	disks := fs.String("disks", "auto", "auto, none, or a comma-separated list of whole disks (/dev/vda,/dev/vdb)")
	dry := fs.Bool("dry-run", false, "check and plan everything, reserve the mailbox, but do not freeze")
	mbox := fs.Int("mailbox-size", 4<<20, "bytes of the mailbox region")
	rcpt := addRecipientFlags(fs)
	precopy := fs.Bool("precopy", false, "for a URL: send the disks' chunks the store lacks while the machine runs, then the pre-copy's signed bundle object NAME.precopy (a target with thaw.follow=1 writes it while the machine still runs); the frozen phase then sends only what changed")
	rate := fs.Int64("rate", 0, "with --precopy: read the disks at most this many MiB a second (0: no bound), so that services keep their I/O")
	base := fs.String("base", "", "for a URL: the bundle beside --to whose memory pages this capture's memory refers to instead of sending them again (default: this server's last capture into a store, as /var/lib/thaw/last-capture names it); none: send the memory whole")
	chunkKeyPath := fs.String("chunk-key", capture.DefaultChunkKey, "chunk key file (thaw keygen --chunk-key) for a URL --to; the default is made on first use")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *to == "" || *keyPath == "" {
		fs.Usage()
		return &exitError{2, errors.New("--to and --key are required")}
	}
	key, err := bundle.LoadPrivateKey(*keyPath, os.Getenv("THAW_KEY_PASSWORD"))
	if err != nil {
		return err
	}
	// Before anything else, and so before the freeze.
	recipients, err := rcpt.load()
	if err != nil {
		return err
	}
	token, roots, err := storeAccess(*tokenFile, *caFile)
	if err != nil {
		return err
	}
	var chunkKey string
	if len(recipients) > 0 && (strings.HasPrefix(*to, "http://") || strings.HasPrefix(*to, "https://") || s3.IsURL(*to)) {
		chunkKey = *chunkKeyPath
	}
	o := capture.Options{To: *to, Token: token, Roots: roots}
	if s3.IsURL(*to) {
		host, _ := os.Hostname()
		if o.S3Object, err = s3.Parse(*to, host+".thaw"); err != nil {
			return err
		}
		if o.S3, err = s3Client(*s3Endpoint, "", roots); err != nil {
			return err
		}
		o.To = o.S3Object.String()
	}
	m, err := probe.Probe("/")
	if err != nil {
		return err
	}
	var list []string
	switch *disks {
	case "auto":
		list = capture.AutoDisks(m)
	case "none":
	default:
		list = strings.Split(*disks, ",")
	}
	o.Key, o.Recipients, o.ChunkKeyFile, o.MakeChunkKey = key, recipients, chunkKey, chunkKey == capture.DefaultChunkKey
	o.Base, o.LastFile = *base, capture.LastCapture
	o.Precopy, o.Rate, o.Disks, o.MailboxSize, o.DryRun, o.Manifest = *precopy, *rate<<20, list, *mbox, *dry, m
	o.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "thaw capture: "+f+"\n", a...) }
	res, err := capture.Run(o)
	if err != nil {
		return err
	}
	if res.Resumed {
		fmt.Printf("resumed from the bundle; %s\n", res.Mailbox)
	}
	return nil
}

// storeAccess reads what reaches thaw serve: the token file and the CAs
// of --ca-file.
func storeAccess(tokenFile, caFile string) (string, *x509.CertPool, error) {
	token, err := readToken(tokenFile)
	if err != nil {
		return "", nil, err
	}
	roots, err := loadRoots(caFile)
	return token, roots, err
}

// loadRoots reads a PEM file of CA certificates; "" is the system's.
func loadRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", path)
	}
	return pool, nil
}
