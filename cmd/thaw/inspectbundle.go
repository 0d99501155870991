package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/s3"
)

type bundleInspect struct {
	Ref        string             `json:"ref"`
	Type       string             `json:"type"` // "bundle"
	Verdict    string             `json:"verdict"`
	Reasons    []string           `json:"reasons,omitempty"`
	Signature  string             `json:"signature"`              // verified, not-checked, refused
	Digest     string             `json:"index_sha256,omitempty"` // pin it with REF#sha256=DIGEST
	Encryption string             `json:"encryption,omitempty"`   // PLAINTEXT, or encrypted and whether decrypted
	Recipients []string           `json:"recipients,omitempty"`   // age1… it is encrypted to
	Label      *bundle.Label      `json:"label,omitempty"`        // id, host, time: signed when verified
	Manifest   *manifest.Manifest `json:"manifest,omitempty"`
	Streams    []*bundle.Stream   `json:"streams,omitempty"`
	Verified   bool               `json:"verified"`
}

// isBundleRef tells a bundle (URL, or a file starting with the bundle
// magic) from a swap area.
func isBundleRef(ref string) bool {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || s3.IsURL(ref) {
		return true
	}
	if plain, pin, err := bundle.SplitPin(ref); err == nil && pin != "" {
		ref = plain
	}
	f, err := os.Open(ref)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(s3.ListMagic))
	n, _ := io.ReadFull(f, b)
	return n >= 8 && string(b[:8]) == "THAWBNDL" || s3.IsList(b[:n])
}

func inspectBundle(ref, pubPath, token string, ids []age.Identity, quick bool) (*bundleInspect, error) {
	res := &bundleInspect{Ref: ref, Type: "bundle", Signature: "not-checked"}
	var pub *minisign.PublicKey
	if pubPath != "" {
		k, err := bundle.LoadPublicKey(pubPath)
		if err != nil {
			return nil, err
		}
		pub = &k
	}
	br, closeFn, err := openBundleLocked(ref, token, pub, nil, true)
	if err != nil && pub != nil && (errors.Is(err, bundle.ErrBadSignature) || errors.Is(err, bundle.ErrUnsigned)) {
		res.Signature, res.Verdict, res.Reasons = "refused", "refused", []string{err.Error()}
		if br2, c2, err2 := openBundleLocked(ref, token, nil, nil, true); err2 == nil {
			res.Manifest, res.Streams = br2.Manifest, br2.Index.Streams
			c2()
		}
		return res, nil
	}
	if err != nil {
		if strings.Contains(err.Error(), "bundle:") {
			res.Verdict, res.Reasons = "corrupt", []string{err.Error()}
			return res, nil
		}
		return nil, err
	}
	defer closeFn()
	res.Manifest, res.Streams = br.Manifest, br.Index.Streams
	res.Digest, res.Label = br.Digest(), &br.Label
	if br.Signed {
		res.Signature = "verified"
	}
	res.Verdict = "ok"
	res.Recipients = br.Recipients()
	locked := br.Unlock(ids...) != nil
	switch {
	case br.Encrypted() && locked:
		res.Encryption = "encrypted, not decrypted: give --identity"
	case br.Encrypted():
		res.Encryption = "encrypted, decrypted"
	default:
		res.Encryption = "PLAINTEXT"
	}
	if !quick {
		verify := br.Verify
		if locked {
			// The stored hashes can be checked without the key.
			verify = br.VerifyStored
		}
		if err := verify(nil); err != nil {
			res.Verdict, res.Reasons = "corrupt", []string{err.Error()}
			return res, nil
		}
		res.Verified = true
		if locked {
			res.Reasons = append(res.Reasons, "contents not checked: encrypted to "+strings.Join(br.Recipients(), ", ")+" (give --identity)")
		}
	}
	if pub == nil {
		res.Reasons = append(res.Reasons, "signature not checked: give --pubkey")
	}
	return res, nil
}

func printBundle(w io.Writer, r *bundleInspect, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return
	}
	fmt.Fprintf(w, "%s  bundle %s, signature %s\n", r.Ref, strings.ToUpper(r.Verdict), r.Signature)
	if r.Label != nil {
		fmt.Fprintf(w, "  bundle id %s from %s, written %s\n", r.Label.ID, r.Label.Host, r.Label.Created)
	}
	if r.Encryption != "" {
		fmt.Fprintf(w, "  %s", r.Encryption)
		if len(r.Recipients) > 0 {
			fmt.Fprintf(w, " (recipients %s)", strings.Join(r.Recipients, ", "))
		}
		fmt.Fprintln(w)
	}
	if r.Digest != "" {
		fmt.Fprintf(w, "  index sha256 %s (pin it: %s#sha256=%s)\n", r.Digest, strings.SplitN(r.Ref, "#", 2)[0], r.Digest)
	}
	for _, reason := range r.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", reason)
	}
	if m := r.Manifest; m != nil {
		fmt.Fprintf(w, "  source        %s (%s), kernel %s, %d MiB RAM\n", orUnknown(m.Hostname), m.Kind, orUnknown(m.Kernel.Release), m.MemoryBytes>>20)
		if m.Image != nil {
			fmt.Fprintf(w, "  memory image  %d pages (%d data, %d zero, %d metadata), e820 digest %s\n", m.Image.Pages, m.Image.DataPages, m.Image.ZeroPages, m.Image.MetaPages, m.Image.E820Checksum)
		}
		for i, d := range m.Disks {
			fmt.Fprintf(w, "  disk %d        %s, %d MiB, %s, %d partitions\n", i, d.Name, d.Size>>20, orUnknown(d.Table), len(d.Partitions))
		}
		switch {
		case m.Resume != nil && len(m.Resume.Slots) > 0:
			var pages uint64
			for _, e := range m.Resume.Slots {
				pages += e.Count
			}
			fmt.Fprintf(w, "  resume        into the server's own swap %s on disk %d: %d pages (%d MiB) reserved in %d runs, header at disk byte %d\n",
				m.Resume.Device, m.Resume.Disk, pages, pages*4096>>20, len(m.Resume.Slots), m.Resume.HeaderOffset)
		case m.Resume != nil:
			fmt.Fprintf(w, "  resume        disk %d partition %d (PARTUUID %s), header at byte %d, image in disk: %v\n", m.Resume.Disk, m.Resume.Partition, m.Resume.PartUUID, m.Resume.HeaderOffset, m.Resume.InDisk)
		case m.Kind == "capture":
			fmt.Fprintf(w, "  resume        no room reserved in the server's own swap: a restore needs a resume area (--resume, thaw.area=)\n")
		}
	}
	for _, s := range r.Streams {
		zero := 0
		for _, c := range s.Chunks {
			if c.Zero {
				zero++
			}
		}
		fmt.Fprintf(w, "  stream %-8s %-7s %7d MiB in %5d chunks (%d zero), %7d MiB stored\n", s.Name, s.Kind, s.Size>>20, len(s.Chunks), zero, s.StoredSize()>>20)
	}
}
