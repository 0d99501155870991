package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/swsusp"
)

const inspectHelp = `
REF is a bundle (a file or an http(s) URL; see thaw export) or a swap area.
For a bundle it checks the signature (with --pubkey), the index, the
manifest and every chunk, and prints the source's profile and the streams.

For a swap area it reads the hibernation image a kernel wrote there (a swap partition,
a swap file's device, a disk image, or PATH#N for partition N of a GPT disk),
checks all of it (every swap_map pointer, every compressed block, the CRC32,
the PFN lists and every page) and says whether a kernel would resume it.

Page counts are the kernel's own: data pages = "Image created (N pages
copied" in the hibernating kernel's log; zero pages = its "Z zero pages"
(6.9+ kernels leave all-zero pages out); saving pages = "saving image data
(S pages)" = total - 1.

Exit status: 0 the image is resumable; 3 there is no valid image (the verdict
and reasons say why); 1 the place could not be read; 2 bad usage.

JSON fields (--json):
  ref, resume_offset         what was read (resume_offset in 4096-byte pages)
  verdict                    "resumable", "corrupt" or "no-image"
  verified                   the whole image was read and checked; when false,
                             pages holds only what swsusp_info claims
  reasons                    why, when not resumable
  signature, orig_signature  swsusp header signatures (S1SUSPEND, SWAPSPACE2)
  flags, flag_names          SF_* flags of the header
  compression                lzo, lz4 or none
  crc32                      {stored, computed, checked}: checked is false for
                             uncompressed images, which carry no checksum
  kernel                     {release, version, version_code, banner}: the image
                             kernel, from the linux_banner in its memory
  arch                       {magic, magic_ok, e820_checksum, jump_address, cr3}
  pages                      {total, saving, data, zero, metadata, pfns,
                             machine}: total = swsusp_info.pages, machine =
                             num_physpages of the hibernated machine
  swap_area                  {label, uuid, pages}
  swap_pages, map_pages, blocks   the image's footprint in the swap area
`

type inspectCRC struct {
	Stored   string `json:"stored"`
	Computed string `json:"computed,omitempty"`
	Checked  bool   `json:"checked"`
}

type inspectKernel struct {
	Release     string `json:"release"`
	Version     string `json:"version,omitempty"`
	VersionCode uint32 `json:"version_code"`
	Banner      string `json:"banner,omitempty"`
}

type inspectArch struct {
	Magic        string `json:"magic"`
	MagicOK      bool   `json:"magic_ok"`
	E820Checksum string `json:"e820_checksum"`
	JumpAddress  string `json:"jump_address"`
	CR3          string `json:"cr3"`
}

type inspectPages struct {
	Total    uint64 `json:"total"`
	Saving   uint64 `json:"saving"`
	Data     uint64 `json:"data"`
	Zero     uint64 `json:"zero"`
	Metadata uint64 `json:"metadata"`
	PFNs     uint64 `json:"pfns"`
	Machine  uint64 `json:"machine"`
}

type inspectArea struct {
	Label string `json:"label"`
	UUID  string `json:"uuid"`
	Pages uint32 `json:"pages"`
}

type inspectResult struct {
	Ref           string         `json:"ref"`
	ResumeOffset  int64          `json:"resume_offset"`
	Verdict       string         `json:"verdict"`
	Verified      bool           `json:"verified"`
	Reasons       []string       `json:"reasons,omitempty"`
	Signature     string         `json:"signature"`
	OrigSignature string         `json:"orig_signature,omitempty"`
	Flags         uint32         `json:"flags"`
	FlagNames     []string       `json:"flag_names"`
	Compression   string         `json:"compression,omitempty"`
	CRC32         *inspectCRC    `json:"crc32,omitempty"`
	Kernel        *inspectKernel `json:"kernel,omitempty"`
	Arch          *inspectArch   `json:"arch,omitempty"`
	Pages         *inspectPages  `json:"pages,omitempty"`
	SwapArea      inspectArea    `json:"swap_area"`
	SwapPages     int64          `json:"swap_pages,omitempty"`
	MapPages      int            `json:"map_pages,omitempty"`
	Blocks        int            `json:"blocks,omitempty"`
}

func flagNames(f uint32) []string {
	names := []string{}
	for _, x := range []struct {
		bit  uint32
		name string
	}{{swsusp.FlagPlatformMode, "platform"}, {swsusp.FlagNoCompress, "nocompress"}, {swsusp.FlagCRC32, "crc32"}, {swsusp.FlagHWSig, "hw_sig"}, {swsusp.FlagLZ4, "lz4"}} {
		if f&x.bit != 0 {
			names = append(names, x.name)
		}
	}
	return names
}

// openVerifiedImage verifies the image at ref whole, then opens it for
// reading: the source of rewrite and export. An image that is not
// resumable is refused with the verdict's reasons.
func openVerifiedImage(ref string, resumeOffset int64) (*inspectResult, *blockdev.Dev, *swsusp.Reader, error) {
	res, err := inspectImage(ref, resumeOffset)
	if err != nil {
		return nil, nil, nil, err
	}
	if res.Verdict != "resumable" {
		return nil, nil, nil, &exitError{3, fmt.Errorf("%s holds no resumable image (%s): %v; nothing was written", ref, res.Verdict, res.Reasons)}
	}
	dev, err := blockdev.Open(ref, false)
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := swsusp.NewReader(dev, dev.Size, resumeOffset)
	if err != nil {
		dev.Close()
		return nil, nil, nil, err
	}
	return res, dev, r, nil
}

// inspectImage reads and verifies the image at ref; the error is set only
// when the place itself could not be read.
func inspectImage(ref string, resumeOffset int64) (*inspectResult, error) {
	dev, err := blockdev.Open(ref, false)
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	res := &inspectResult{Ref: ref, ResumeOffset: resumeOffset, FlagNames: []string{}}
	r, err := swsusp.NewReader(dev, dev.Size, resumeOffset)
	if r != nil {
		h := r.Header
		res.Signature, res.OrigSignature, res.Flags, res.FlagNames = h.Sig, h.OrigSig, h.Flags, flagNames(h.Flags)
		res.SwapArea = inspectArea{Label: r.Area.Label, UUID: r.Area.UUIDString(), Pages: r.Area.LastPage + 1}
	}
	if errors.Is(err, swsusp.ErrNoImage) {
		res.Verdict = "no-image"
		res.Reasons = []string{fmt.Sprintf("the swap area's signature is %q, not %q: no kernel wrote an image here, or one already resumed from it", res.Signature, swsusp.SigHibernate)}
		return res, nil
	}
	if err != nil {
		if r == nil {
			return nil, err
		}
		res.Verdict = "corrupt"
		res.Reasons = []string{err.Error()}
		return res, nil
	}
	res.Compression = string(r.Header.Compression())
	in, err := r.ReadInfo()
	if err != nil {
		res.Verdict = "corrupt"
		res.Reasons = []string{err.Error()}
		return res, nil
	}
	rep, verr := r.Verify()
	res.Arch = &inspectArch{
		Magic:        fmt.Sprintf("%#x", in.Arch.Magic),
		MagicOK:      in.Arch.Magic == swsusp.RestoreMagic,
		E820Checksum: fmt.Sprintf("%#08x", in.Arch.E820Checksum),
		JumpAddress:  fmt.Sprintf("%#x", in.Arch.JumpAddress),
		CR3:          fmt.Sprintf("%#x", in.Arch.CR3),
	}
	res.Pages = &inspectPages{Total: in.Pages, Data: rep.DataPages, Zero: rep.ZeroPages, Metadata: rep.MetaPages, PFNs: rep.PFNs, Machine: in.NumPhysPages}
	if in.Pages > 0 {
		res.Pages.Saving = in.Pages - 1
	}
	crcMode := r.Header.Flags&swsusp.FlagCRC32 != 0 && r.Header.Compression() != swsusp.CompressNone
	res.CRC32 = &inspectCRC{Stored: fmt.Sprintf("%#08x", r.Header.CRC32), Checked: crcMode}
	if rep.CRC32Checked {
		res.CRC32.Computed = fmt.Sprintf("%#08x", rep.CRC32)
	}
	res.Kernel = &inspectKernel{Release: rep.Release, VersionCode: rep.VersionCode, Banner: rep.Banner}
	if rep.VersionCode != 0 {
		res.Kernel.Version = fmt.Sprintf("%d.%d.%d", rep.VersionCode>>16, rep.VersionCode>>8&0xff, rep.VersionCode&0xff)
	}
	res.SwapPages, res.MapPages, res.Blocks = rep.SwapPages, rep.MapPages, rep.Blocks
	if verr != nil {
		// Only what the header page says is known.
		res.Verdict = "corrupt"
		res.Reasons = append(res.Reasons, verr.Error())
		res.Pages = &inspectPages{Total: in.Pages, Saving: in.Pages - 1, Data: in.ImagePages, Metadata: in.MetaPages(), Machine: in.NumPhysPages}
		res.CRC32.Computed = ""
		res.Kernel = nil
		res.SwapPages, res.MapPages, res.Blocks = 0, 0, 0
		return res, nil
	}
	res.Verified = true
	res.Verdict = "resumable"
	if rep.Release == "" {
		res.Reasons = append(res.Reasons, "no linux_banner found in the image's memory: kernel release unknown")
	}
	return res, nil
}

func runInspect(args []string) error {
	fs := newFlags("inspect", "[--json] [--pubkey FILE] [--identity FILE] [--resume-offset PAGES] REF", inspectHelp)
	asJSON := fs.Bool("json", false, "print the result as JSON (fields above)")
	off := fs.Int64("resume-offset", 0, "page offset of the swap header inside the device (the kernel's resume_offset, for swap files)")
	pubPath := fs.String("pubkey", "", "for a bundle: the minisign public key its signature must verify with")
	tokenFile := fs.String("token-file", "", "for a bundle URL: bearer token file")
	quick := fs.Bool("quick", false, "for a bundle: check signature, index and manifest only, not every chunk")
	idFiles := addIdentityFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return &exitError{2, fmt.Errorf("want one DEVICE or FILE, got %d arguments", len(pos))}
	}
	if isBundleRef(pos[0]) {
		token, err := readToken(*tokenFile)
		if err != nil {
			return err
		}
		ids, err := loadIdentities(*idFiles)
		if err != nil {
			return &exitError{2, err}
		}
		br, err := inspectBundle(pos[0], *pubPath, token, ids, *quick)
		if err != nil {
			return err
		}
		printBundle(os.Stdout, br, *asJSON)
		if br.Verdict != "ok" {
			return &exitError{3, errors.New("")}
		}
		return nil
	}
	res, err := inspectImage(pos[0], *off)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printInspect(os.Stdout, res)
	}
	if res.Verdict != "resumable" {
		return &exitError{3, errors.New("")}
	}
	return nil
}

func printInspect(w io.Writer, r *inspectResult) {
	verdict := map[string]string{"resumable": "RESUMABLE", "corrupt": "CORRUPT — a kernel must not resume this", "no-image": "NO IMAGE"}[r.Verdict]
	fmt.Fprintf(w, "%s  %s\n", r.Ref, verdict)
	for _, reason := range r.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", reason)
	}
	fmt.Fprintf(w, "  swap area     label %q uuid %s, %d pages (%d MiB)\n", r.SwapArea.Label, r.SwapArea.UUID, r.SwapArea.Pages, uint64(r.SwapArea.Pages)*swsusp.PageSize>>20)
	fmt.Fprintf(w, "  signature     %s (displaced %s), flags %#x [%s]\n", r.Signature, r.OrigSignature, r.Flags, strings.Join(r.FlagNames, " "))
	if r.Kernel != nil {
		fmt.Fprintf(w, "  kernel        %s (version %s, code %#x)\n", orUnknown(r.Kernel.Release), orUnknown(r.Kernel.Version), r.Kernel.VersionCode)
	}
	if r.Pages != nil && !r.Verified {
		p := r.Pages
		fmt.Fprintf(w, "  header claims %d pages = 1 header + %d metadata + %d data; machine had %d pages (%d MiB)\n", p.Total, p.Metadata, p.Data, p.Machine, p.Machine*swsusp.PageSize>>20)
	}
	if r.Pages != nil && r.Verified {
		p := r.Pages
		fmt.Fprintf(w, "  pages         %d in the stream = 1 header + %d metadata + %d data; %d zero pages left out\n", p.Total, p.Metadata, p.Data, p.Zero)
		fmt.Fprintf(w, "                kernel log: \"Image created (%d pages copied, %d zero pages)\", \"saving image data (%d pages)\"\n", p.Data, p.Zero, p.Saving)
		fmt.Fprintf(w, "                machine had %d pages (%d MiB) of RAM\n", p.Machine, p.Machine*swsusp.PageSize>>20)
	}
	if r.Compression != "" {
		crc := "none (uncompressed images carry no checksum)"
		switch {
		case r.CRC32 != nil && r.CRC32.Checked && r.Verified:
			crc = fmt.Sprintf("stored %s, computed %s", r.CRC32.Stored, r.CRC32.Computed)
		case r.CRC32 != nil && r.CRC32.Checked:
			crc = fmt.Sprintf("stored %s, not reached", r.CRC32.Stored)
		}
		blocks := ""
		if r.Blocks > 0 {
			blocks = fmt.Sprintf(", %d blocks", r.Blocks)
		}
		fmt.Fprintf(w, "  compression   %s%s; crc32 %s\n", r.Compression, blocks, crc)
	}
	if r.Arch != nil {
		ok := "ok"
		if !r.Arch.MagicOK {
			ok = "WRONG"
		}
		fmt.Fprintf(w, "  x86 header    magic %s (%s), e820 digest %s\n", r.Arch.Magic, ok, r.Arch.E820Checksum)
	}
	if r.SwapPages > 0 {
		fmt.Fprintf(w, "  footprint     %d swap pages (%d MiB), %d swap_map pages\n", r.SwapPages, r.SwapPages*swsusp.PageSize>>20, r.MapPages)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
