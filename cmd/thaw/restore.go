package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/thawlinux/thaw/agent/console"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const restoreHelp = `
Writes a bundle onto this machine's disks so that the image kernel resumes
it. In order, and stopping at the first failure:

  1 open the bundle (a file or an http(s) URL) and verify its signature
    against --pubkey, the manifest's digest and the index
  2 check the target disks: one --disk per disk of the bundle, in its order,
    each at least as large as the source's
  3 when a --disk holds data (or with --verify first): read and verify
    every chunk of the bundle, and write nothing before this has passed
  4 write each disk stream onto its --disk in one pass: each chunk fetched
    once (several at once), checked against the signed index, and written
    at its offset; runs of zero chunks become holes (files) or the
    device's WRITE ZEROES. The resume image's signature is held back, so
    an interrupted restore is never resumable
  5 write the resume image (or, for an image carried inside a disk, its
    swap header) last, after a sync, read it back and verify it

The resume image of a captured bundle goes into the server's own swap, on
the restored disk: into the free pages that thaw capture reserved there
once the image existed (the image kernel finds them free after resume),
and resume= names that swap (PARTUUID=…, or /dev/mapper/NAME for an LVM
swap). --resume puts it into an area of its own instead: a swap-formatted
area (mkswap; its label and UUID are kept) that is not a swap of the image
and not on a --disk target, e.g. /dev/sdb2 or disk.img#2; resume= names
it by its PARTUUID, or by the swap's UUID (never by a path on this
machine). A bundle made by thaw export carries its image inside its disk.

No disk other than those given with --disk (and --resume) is opened for
writing. The result (--json) carries resume_args: the kernel arguments
that resume it; a refusal (--json) is {"ok": false, "refusals": [...]}, the
objects thaw plan --json prints. Exit status 3: refused; 1: failed.
`

type restoreResult struct {
	OK         bool                 `json:"ok"`
	Image      string               `json:"image"`
	Signed     bool                 `json:"signed"`
	Kernel     string               `json:"kernel"`
	Verified   bool                 `json:"verified_first"`
	Disks      []restore.DiskResult `json:"disks"`
	ResumeArgs []string             `json:"resume_args"`
	Stages     map[string]float64   `json:"stage_seconds"`
}

// refusalResult is what --json prints for a refusal or a failure: the
// refusal objects of thaw plan --json.
type refusalResult struct {
	OK       bool           `json:"ok"`
	Title    string         `json:"title"`
	Code     string         `json:"code,omitempty"` // the box's short code (agent)
	Refusals []plan.Refusal `json:"refusals"`
	// PartlyWritten names the disks a failure left partly written
	// (nothing resumable on them).
	PartlyWritten []string `json:"partly_written,omitempty"`
}

func runRestore(args []string) error {
	fs := newFlags("restore", "--image REF --pubkey FILE [--identity FILE] --disk DEV|FILE [--disk …] [--resume AREA | --direct] [--verify first|stream] [--json]", restoreHelp)
	image := fs.String("image", "", "the bundle: a file or an http(s) URL (URL#sha256=DIGEST pins it)")
	pubPath := fs.String("pubkey", "", "minisign public key the bundle must be signed with")
	tokenFile := fs.String("token-file", "", "bearer token for an http(s) --image")
	asJSON := fs.Bool("json", false, "print the result (or the refusal) as JSON on stdout, and the stages as JSON lines on stderr")
	resumeRef := fs.String("resume", "", "swap-formatted area that receives the resume image (DEV or PATH#N)")
	direct := fs.Bool("direct", false, "after writing the disks, hand the memory image to this machine's running kernel (/dev/snapshot), which jumps into it: for a rescue or agent kernel on the target, with the same memory map as the source")
	verify := fs.String("verify", "", "first: check every chunk before the first write; stream: check each chunk as it is written (default: first when a --disk holds data)")
	follow := fs.Bool("follow", false, "follow a capture in progress (thaw capture --precopy): write its pre-copy (IMAGE.precopy) as soon as it is stored, wait for the bundle with the same id, then write only the chunks that changed")
	var disks multiFlag
	fs.Var(&disks, "disk", "target disk for the bundle's next disk stream (repeat, in the bundle's order)")
	idFiles := addIdentityFlag(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *image == "" || *pubPath == "" || len(disks) == 0 {
		fs.Usage()
		return &exitError{2, errors.New("--image, --pubkey and at least one --disk are required")}
	}
	if *direct && *resumeRef != "" {
		return &exitError{2, errors.New("--direct and --resume exclude each other")}
	}
	if *verify != "" && *verify != bootparam.VerifyFirst && *verify != bootparam.VerifyStream {
		return &exitError{2, fmt.Errorf("--verify %q: want first or stream", *verify)}
	}
	if *follow && (strings.Contains(*image, "#") || strings.Contains(*image, "?")) {
		return &exitError{2, fmt.Errorf("--follow %s: follow a capture by its name alone (thaw serve's http(s)://HOST:PORT/NAME, s3://BUCKET/PREFIX/NAME, or a store directory's file): a capture not yet made has no digest to pin, and its objects cannot be presigned before they exist", *image)}
	}
	pub, err := bundle.LoadPublicKey(*pubPath)
	if err != nil {
		return &exitError{2, err}
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	ids, err := loadIdentities(*idFiles)
	if err != nil {
		return &exitError{2, err}
	}
	limitMemory()
	ref := *image
	var chunks bundle.ChunkSource
	env := restore.System(nil)
	switch {
	case s3.IsURL(ref) && *follow:
		// The pre-copy and the bundle are presigned as they are waited
		// for.
		if env.Store, chunks, err = s3Follow(ref); err != nil {
			return err
		}
	case s3.IsURL(ref):
		if ref, chunks, err = s3Bundle(ref); err != nil {
			return err
		}
	}
	cfg := restore.Config{Mode: restore.Restore, Image: ref, Chunks: chunks, Token: token, Disks: disks, Area: *resumeRef, Direct: *direct, Verify: *verify, Follow: *follow,
		Trust: restore.Trust{Keys: []restore.NamedKey{{Key: pub, Name: *pubPath}}, Identities: ids}}
	st, err := restore.Run(context.Background(), env, reporter(*asJSON), cfg)
	if st != nil {
		defer st.Close()
	}
	if err != nil {
		return refusedExit(err, st.Wrote, *asJSON)
	}
	res := &restoreResult{OK: true, Image: *image, Signed: st.Bundle.Signed, Kernel: st.Bundle.Manifest.Kernel.Release, Verified: st.Verified,
		Disks: st.Written, ResumeArgs: st.ResumeArgs, Stages: st.Times}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("restored %s (kernel %s) onto %s\nboot the image kernel with: %s\n", res.Image, res.Kernel, strings.Join(disks, ", "), strings.Join(res.ResumeArgs, " "))
	return nil
}

// memoryLimit keeps thaw restore and the agent near their bounded
// buffers (the fetch's chunks in flight, the resume image writer): the
// collector runs before the heap reaches twice what is live. GOMEMLIMIT
// overrides it.
const memoryLimit = 48 << 20

func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// reporter is the stage list on stderr: the console's lines, or JSON
// lines.
func reporter(asJSON bool) restore.Reporter {
	if asJSON {
		return restore.NewJSONReporter(os.Stderr)
	}
	return console.New(nil, os.Stderr)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// refusedExit renders a refusal or a failure of the pipeline: the box on
// stderr, or the refusal objects as JSON on stdout. Exit status 3:
// refused; 1: failed.
func refusedExit(err error, wrote []string, asJSON bool) error {
	r, code := refusalOf(err, "see the lines above")
	state := "nothing was written"
	if len(wrote) > 0 {
		state = "the disks " + strings.Join(wrote, ", ") + " were partly written, with nothing resumable on them"
	}
	if asJSON {
		printJSON(refusalResult{Title: r.Title, Refusals: r.Refusals, PartlyWritten: wrote})
	} else {
		title := r.Title
		if code == 3 {
			title = "REFUSED: " + title
		}
		fmt.Fprintln(os.Stderr, console.Box(title, r.Refusals, footerFor(wrote)))
	}
	return &exitError{code, fmt.Errorf("%w; %s", err, state)}
}

// refusalOf is the refusal an error carries (exit status 3), or a failure
// rendered as one (check "error", exit status 1).
func refusalOf(err error, hint string) (*plan.Refused, int) {
	var r *plan.Refused
	if errors.As(err, &r) {
		return r, 3
	}
	return &plan.Refused{Title: "FAILED", Refusals: []plan.Refusal{{Check: plan.CheckError, Reason: err.Error(), Hint: hint}}}, 1
}

// footerFor is the refusal box's last line: the state of the disks.
func footerFor(wrote []string) string {
	if len(wrote) == 0 {
		return console.NothingWritten
	}
	return "THE DISKS WERE PARTLY WRITTEN (" + strings.Join(wrote, ", ") + ") and nothing resumable was left on them: do not boot them; fix the cause and run the restore again."
}
