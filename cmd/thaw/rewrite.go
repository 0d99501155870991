package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/swsusp"
)

const rewriteHelp = `
Copies the hibernation image in one swap area into another, as the kernel
would have written it there, in the compression asked for: the tool for a
resume area that must move. The source is verified whole before anything is
written; the target must be a swap area (mkswap) or hold an older image, and
keeps its label, UUID and size. The target's signature is cleared first and
S1SUSPEND is written last, after everything else is synced: an interrupted
rewrite leaves nothing a kernel would resume. The copy is read back and
verified. The source is left as it is.

Boot the image's kernel with the printed resume= (and resume_offset=) to
resume from the new place.
`

type rewriteResult struct {
	From        string   `json:"from"`
	To          string   `json:"to"`
	Compression string   `json:"compression"`
	Pages       uint64   `json:"pages"`
	SwapPages   int64    `json:"swap_pages"`
	Seconds     float64  `json:"seconds"`
	ResumeArgs  []string `json:"resume_args"`
}

func runRewrite(args []string) error {
	fs := newFlags("rewrite", "--from DEV|FILE --to DEV|FILE [--compress lzo|none|lz4]", rewriteHelp)
	from := fs.String("from", "", "the swap area holding the image (DEV, FILE or PATH#N)")
	to := fs.String("to", "", "the swap area to write it to (DEV, FILE or PATH#N)")
	comp := fs.String("compress", "lzo", "lzo (the kernel's default), none, or lz4 (6.9+ kernels with lz4 available)")
	fromOff := fs.Int64("from-offset", 0, "resume_offset of the source's swap header, in pages")
	toOff := fs.Int64("to-offset", 0, "resume_offset of the target's swap header, in pages")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return &exitError{2, errors.New("--from and --to are required")}
	}
	c, err := swsusp.ParseCompression(*comp)
	if err != nil {
		return &exitError{2, err}
	}
	start := time.Now()
	res, src, r, err := openVerifiedImage(*from, *fromOff)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := blockdev.Open(*to, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	if overlap, err := dst.Overlaps(src); overlap {
		if err != nil {
			return &exitError{2, fmt.Errorf("cannot tell whether %s and %s overlap (%v): nothing was written", *from, *to, err)}
		}
		return &exitError{2, fmt.Errorf("%s and %s are the same bytes: choose another target (nothing was written)", *from, *to)}
	}
	progress := func(done, total uint64) {}
	if isTerminal(os.Stderr) && !*asJSON {
		progress = func(done, total uint64) {
			if done == total || done%(1024) < 32 {
				fmt.Fprintf(os.Stderr, "\rwriting %s: %3d%% (%d/%d pages)", *to, done*100/total, done, total)
			}
		}
	}
	w, err := swsusp.NewWriter(dst, dst.Size, *toOff, swsusp.WriterOptions{
		Compression: c,
		Flags:       r.Header.Flags & (swsusp.FlagPlatformMode | swsusp.FlagHWSig),
		HWSig:       r.Header.HWSig,
		Progress:    progress,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *to, err)
	}
	wr, err := w.WriteStream(r.Stream())
	if isTerminal(os.Stderr) && !*asJSON {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", *to, err)
	}
	check, err := inspectImage(*to, *toOff)
	if err != nil {
		return err
	}
	if check.Verdict != "resumable" || check.Pages.Data != res.Pages.Data {
		return fmt.Errorf("%s: the copy does not verify (%s): %v", *to, check.Verdict, check.Reasons)
	}
	name := dst.ResumeArg()
	if name == "" {
		name = dst.Path // neither a PARTUUID nor a swap UUID: only this machine knows it
	}
	out := rewriteResult{From: *from, To: *to, Compression: string(c), Pages: wr.Pages, SwapPages: wr.SwapPages,
		Seconds: time.Since(start).Seconds(), ResumeArgs: []string{"resume=" + name}}
	if *toOff != 0 {
		out.ResumeArgs = append(out.ResumeArgs, fmt.Sprintf("resume_offset=%d", *toOff))
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Printf("%s → %s: %d pages as %s in %d swap pages, verified (%.1fs)\nresume with: %v\n",
		*from, *to, out.Pages, c, out.SwapPages, out.Seconds, out.ResumeArgs)
	return nil
}
