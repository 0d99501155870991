package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const planHelp = `
Decides whether the server in a bundle can be restored on this machine,
and writes nothing. It compares the bundle's manifest with this machine's
profile (thaw probe):

  cpu      every CPU feature the image kernel saw must be here (each
           missing flag is named)
  memory   every RAM range of the source must be RAM here
  disk     each source disk maps to a target disk at least as large:
           --disk in order, or one unambiguous size match; a disk holding
           data is used only when named; a disk on another controller type
           or PCI address is refused (a resumed kernel hangs on the dead one)
  driver   each PCI device here against the image kernel's modules.alias
           (the bundle's modules tree): a disk controller without a driver
           is refused, a NIC without one is noted; with --packs, the
           driver pack for the image kernel's release (RELEASE.pack, made
           by thaw driverpack build) gives the drivers it lacks
  pack     a pack that is unsigned, signed by another key, altered, built
           for another release or vermagic, or that a kernel under lockdown
           or module.sig_enforce=1 would refuse
  resume   direct (the memory maps are identical) or kexec (they differ:
           e820 replay)
  devices  the device plan: each source disk and NIC against this
           machine's, with the image kernel's driver for the new device
           and where it comes from (builtin, loaded on the source, a module
           carried into the image's memory, or the pack's), and the action:
           keep; redirect (a disk on another controller: root and swap
           must sit on device-mapper, whose tables the resumed server
           re-points); rebind (a NIC elsewhere takes the source's name,
           MAC, addresses and routes); refuse (with the fix); none

--target FILE plans against a profile saved on the target machine with
"thaw probe --json" (from the agent's rescue shell, for instance), or
taken from the "thaw-probe-json" line of an agent's thaw.log= log (the
agent records this machine's profile and its plan there), so a move can
be checked before the downtime. --json prints the plan, devices
included, as the agent applies it.

Exit status 0: restorable; 3: refused (the reasons and fixes are printed).
`

func runPlan(args []string) error {
	fs := newFlags("plan", "--image REF [--pubkey FILE] [--identity FILE] [--target PROBE.json] [--disk DEV …] [--json]", planHelp)
	image := fs.String("image", "", "the bundle: a file or an http(s) URL")
	pubPath := fs.String("pubkey", "", "minisign public key the bundle must be signed with")
	tokenFile := fs.String("token-file", "", "bearer token for an http(s) --image")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	packs := fs.String("packs", "", "directory (or http(s) URL) of driver packs, as the agent's thaw.packs=: RELEASE.pack gives drivers the image kernel lacks")
	targetFile := fs.String("target", "", "plan against this profile (thaw probe --json saved on the target machine) instead of this machine")
	idFiles := addIdentityFlag(fs)
	var disks multiFlag
	fs.Var(&disks, "disk", "target disk for the bundle's next disk (repeat, in order): consent to overwrite it")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *image == "" {
		fs.Usage()
		return &exitError{2, errors.New("--image is required")}
	}
	trust := restore.Trust{Unverified: *pubPath == ""}
	if *pubPath != "" {
		k, err := bundle.LoadPublicKey(*pubPath)
		if err != nil {
			return &exitError{2, err}
		}
		trust.Keys = []restore.NamedKey{{Key: k, Name: *pubPath}}
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	if trust.Identities, err = loadIdentities(*idFiles); err != nil {
		return &exitError{2, err}
	}
	cfg := restore.Config{Mode: restore.Plan, Image: *image, Token: token, Disks: disks, Trust: trust, Packs: strings.TrimRight(*packs, "/")}
	if s3.IsURL(cfg.Image) {
		if cfg.Image, cfg.Chunks, err = s3Bundle(cfg.Image); err != nil {
			return err
		}
	}
	if *targetFile != "" {
		b, err := os.ReadFile(*targetFile)
		if err != nil {
			return &exitError{2, err}
		}
		if cfg.Target, err = manifest.Parse(b); err != nil {
			return &exitError{2, fmt.Errorf("%s: %w", *targetFile, err)}
		}
	}
	st, err := restore.Run(context.Background(), restore.System(nil), restore.Discard, cfg)
	if st != nil {
		defer st.Close()
	}
	p := st.Plan
	var r *plan.Refused
	if p == nil || (err != nil && !errors.As(err, &r)) {
		// Refused or failed before there was a plan to print.
		return refusedExit(err, nil, *asJSON)
	}
	if !st.Bundle.Signed {
		p.Notes = append(p.Notes, "the bundle's signature was not checked: give --pubkey")
	}
	if *asJSON {
		if err := printJSON(p); err != nil {
			return err
		}
	} else {
		printPlan(os.Stdout, p, st.Bundle.Manifest.Kernel.Release)
	}
	if !p.OK {
		return &exitError{3, errors.New("")}
	}
	return nil
}

func printPlan(w io.Writer, p *plan.Plan, release string) {
	verdict := "RESTORABLE"
	if !p.OK {
		verdict = "REFUSED"
	}
	fmt.Fprintf(w, "plan: %s (image kernel %s, resume %s: %s)\n", verdict, orUnknown(release), p.Resume, p.ResumeWhy)
	for _, r := range p.Refusals {
		fmt.Fprintf(w, "  ✗ %-7s %s\n            fix: %s\n", r.Check, r.Reason, r.Hint)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note      %s\n", n)
	}
	fmt.Fprintf(w, "  memory    source %d MiB RAM, this machine %d MiB; same map: %v\n", p.SourceRAM>>20, p.TargetRAM>>20, p.SameMap)
	for _, d := range p.Disks {
		fmt.Fprintf(w, "  disk      %s (%d MiB) → %s (%d MiB)%s\n", d.Source, d.SourceSize>>20, orUnknown(d.Target), d.TargetSize>>20, map[bool]string{true: ", named", false: ""}[d.Consent])
	}
	for _, d := range p.Devices {
		where, what := restore.DeviceLine(d)
		fmt.Fprintf(w, "  device    %s\n              %s\n", where, what)
	}
	for _, d := range p.Drivers {
		mod := restore.DriverText(d)
		if d.Module == "" {
			mod = "— none"
		}
		if d.Kind != "other" || d.Module == "" {
			fmt.Fprintf(w, "  driver    %s %-5s %s\n", d.PCI, d.Kind, mod)
		}
	}
}
