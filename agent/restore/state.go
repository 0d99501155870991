package restore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/dhcp"
)

// Mode is the command that runs the pipeline.
type Mode int

const (
	// Agent is thaw agent on the target: every stage, instructions from
	// the kernel command line.
	Agent Mode = iota
	// Restore is thaw restore: no drivers, no network set-up; disks and
	// the resume area are files or devices named by flags.
	Restore
	// Plan is thaw plan: it stops after the plan and writes nothing.
	Plan
)

// Paths of the handover.
const (
	PathDirect = "direct" // this kernel's /dev/snapshot restores the image
	PathKexec  = "kexec"  // the image kernel, kexec'd, resumes from an area
	PathArea   = "area"   // thaw restore: the image goes to an area, resume= is printed
)

// NamedKey is a trusted signing key and where it came from.
type NamedKey struct {
	Key  minisign.PublicKey
	Name string
}

// Trust is what the pipeline trusts.
type Trust struct {
	// Keys verify the bundle's index: the first that verifies wins.
	Keys []NamedKey
	// Pinned: Keys are built into the agent, and a thaw.pubkey= from the
	// command line is not trusted beside them.
	Pinned bool
	// Identities decrypt an encrypted bundle.
	Identities []age.Identity
	// Unverified opens a bundle without checking its signature when no
	// key is given (thaw.insecure=1; thaw plan without --pubkey).
	Unverified bool
}

// Config is what the caller asks for.
type Config struct {
	Mode Mode
	// Cmdline is the agent's kernel command line: the params stage reads
	// the other fields from it.
	Cmdline string
	// Image is the bundle: a file, or an http(s) URL, with an optional
	// #sha256= pin.
	Image string
	Token string
	// Chunks, if set, reads a store bundle's chunks (an S3 bundle, each
	// chunk presigned on demand); default: chunks/ beside Image, or the
	// URLs of a presigned list.
	Chunks bundle.ChunkSource
	// Disks are the target disks in the bundle's disk order: names under
	// /dev for the agent and thaw plan, files or devices for thaw
	// restore.
	Disks []string
	// Area is the resume area: a swap partition not on Disks (the agent:
	// a name under /dev; thaw restore: DEV or PATH#N).
	Area string
	// Resume is the agent's handover, bootparam.ResumeAuto, ResumeDirect
	// or ResumeKexec; thaw restore sets Direct instead.
	Resume string
	Direct bool
	// Verify is bootparam.VerifyFirst, VerifyStream or "" (first when a
	// target disk holds data, else stream).
	Verify string
	// Packs is where driver packs are (thaw.packs=, --packs): a
	// directory URL or path holding RELEASE.pack; "" : none.
	Packs string
	// Target is a saved profile of the target machine (thaw plan
	// --target); nil probes this machine.
	Target *manifest.Manifest
	// DryRun stops after the plan.
	DryRun bool
	// Follow follows a capture in progress (thaw.follow=1, --follow):
	// its pre-copy (Image + bundle.PrecopySuffix) is written while the
	// server runs, then only the chunks of the bundle that differ.
	Follow bool
	Trust  Trust
	// Fetch bounds the parallel fetch; HTTP the transfer (retries,
	// minimum rate, deadline).
	Fetch    bundle.FetchOptions
	Retries  int
	MinRate  int64
	Deadline time.Duration
	// Params is the agent's parsed command line (set by the params
	// stage).
	Params *bootparam.Params
	// Transcript returns the console's lines so far: the log the agent
	// writes to the thaw stick. May be nil.
	Transcript func() []byte
}

// DiskResult is what was written to one disk.
type DiskResult struct {
	Stream       string `json:"stream"`
	Target       string `json:"target"`
	Bytes        int64  `json:"bytes"`
	WrittenBytes int64  `json:"written_bytes"`
	ZeroChunks   int    `json:"zero_chunks"`
	// KeptBytes were on the disk already: written by the pre-copy of a
	// follow, the same bytes at the same place.
	KeptBytes int64 `json:"kept_bytes,omitempty"`
	// Zeroed is how zero chunks were made to read as zeros: "offload"
	// (a hole punched, or the device's WRITE ZEROES), "checked" (read,
	// and written only where not zero already), or "" (none).
	Zeroed string `json:"zeroed,omitempty"`
}

// State is one bundle on its way through the stages.
type State struct {
	Config
	Lease      *dhcp.Lease
	Bundle     *bundle.Reader
	Machine    *manifest.Manifest // this machine's profile
	Plan       *plan.Plan
	Path       string   // PathDirect, PathKexec or PathArea
	Targets    []string // the disks written, in the bundle's order
	Written    []DiskResult
	ResumeArgs []string // the kernel arguments that resume the image (kexec, area)
	Payload    []byte   // the device plan and its modules, for the image's mailbox
	Release    []string // PCI devices the image kernel drives afresh
	Replay     bool     // the memory maps differ: stage 2 with the source's e820
	Wrote      []string // disks opened for writing: after a failure they are partly written
	Times      map[string]float64
	Stage2     *stage2.State // read in the second stage
	Verified   bool          // every chunk was checked before the first write
	StickDisk  string        // the thaw stick's disk, when mounted
	StickLog   string        // the log written to the stick (thaw-logs/…)

	Pack *driverpack.Pack // the image kernel's driver pack, verified

	pin     string    // the index digest asked for (#sha256=)
	signer  *NamedKey // the trusted key that verified the bundle
	kernel  string    // the agent kernel for stage 2 (the kernel stage)
	blob    Blob
	devs    []*blockdev.Dev
	area    *blockdev.Dev
	arm     *stage2.Arm // the resume header held back for stage 2
	held    []byte
	follow  *following
	closers []func()
}

// Close releases the bundle and the disks.
func (s *State) Close() {
	if s == nil {
		return
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (s *State) onClose(f func()) { s.closers = append(s.closers, f) }

// Timing is the stages' seconds, "name=1.2s …".
func (s *State) Timing() string {
	var names []string
	for n := range s.Times {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s=%.1fs", n, s.Times[n]))
	}
	return strings.Join(out, " ")
}

// Stage is one step of the pipeline.
type Stage struct {
	Name string
	// When reports whether the stage runs for this state; nil: always.
	When func(*run) bool
	Do   func(context.Context, *run) error
}

// run is the pipeline at work: the machine, the reporter and the state.
type run struct {
	env Env
	rep Reporter
	st  *State
	// again, set by a stage, is the stage the pipeline goes back to.
	again string
}

func (r *run) logf(format string, a ...any) { r.rep.Logf(format, a...) }

// refuse reports a refusal on the current stage and returns it.
func (r *run) refuse(title string, check plan.Check, reason, hint string) error {
	r.rep.Fail(reason)
	return plan.NewRefused(title, check, reason, hint)
}

// fail reports err on the current stage and returns it.
func (r *run) fail(err error) error {
	r.rep.Fail(err.Error())
	return err
}
