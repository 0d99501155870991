package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

const fixParams = "fix the thaw.* parameters on the kernel command line (PXE script or boot menu)"

// params reads the agent's instructions from the kernel command line.
func params(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("params", "kernel command line")
	p, err := bootparam.Parse(st.Cmdline)
	if err == nil {
		err = p.Validate(true)
	}
	if err != nil {
		return r.refuse("bad boot parameters", plan.CheckParams, err.Error(), fixParams)
	}
	for _, w := range p.Warnings {
		r.logf("warning: %s", w)
	}
	st.Params = p
	st.Image, st.Token, st.Area, st.Resume, st.Verify = p.Image, p.Token, p.Area, p.Resume, p.Verify
	st.Retries, st.MinRate, st.Deadline = p.Retries, p.MinRate, p.Deadline
	st.Disks = p.Disks
	st.Packs = p.Packs
	st.DryRun = st.DryRun || p.DryRun
	st.Follow = st.Follow || p.Follow
	st.Trust.Unverified = st.Trust.Unverified || p.Insecure
	r.rep.Done(fmt.Sprintf("stage %d, image %s, disks %s, resume %s", max(p.Stage, 1), s3.Redact(p.Image), orAuto(strings.Join(p.Disks, ",")), orAuto(p.Resume)))
	return nil
}

// drivers loads the agent kernel's modules for the devices present.
func drivers(ctx context.Context, r *run) error {
	r.rep.Begin("drivers", "coldplug")
	if r.env.Drivers == nil {
		return r.fail(errors.New("no driver loader"))
	}
	cp, err := r.env.Drivers.Coldplug(r.logf)
	if err != nil {
		return r.fail(err)
	}
	for _, d := range cp.Devices {
		if d.Err != "" {
			r.logf("%s (%s): %s", d.Path, d.Modalias, d.Err)
		}
	}
	for _, d := range cp.Unclaimed() {
		if d.Err == "" {
			r.logf("no driver in the agent kernel for %s (%s)", d.Path, d.Modalias)
		}
	}
	r.rep.Done(fmt.Sprintf("%d modules loaded: %s", len(cp.Loaded), strings.Join(cp.Loaded, " ")))
	return nil
}

// network brings a link up with DHCP and starts the remote log.
func network(ctx context.Context, r *run) error {
	r.rep.Begin("dhcp", "DHCPv4 on every link with carrier")
	if !needsNet(r.st.Params) {
		r.rep.Skip("no network needed: the image is a local file and no thaw.log=")
		return nil
	}
	if r.env.Net == nil {
		return r.fail(errors.New("no network"))
	}
	lease, err := r.env.Net.DHCP(ctx, r.st.Params.Iface, r.logf)
	if err != nil {
		return r.fail(fmt.Errorf("dhcp: %w", err))
	}
	r.st.Lease = lease
	r.rep.Done(fmt.Sprintf("%s %s via %v (server %v, %.1fs)", lease.Iface, lease.Addr.String(), lease.Router, lease.Server, lease.Took.Seconds()))
	if r.env.Log != nil && r.st.Params.Log != "" {
		r.env.Log.Start(ctx, r.st.Params.Log, r.st.Token)
	}
	return nil
}

// defaultDeadline bounds the agent's whole download when thaw.deadline=
// is not given.
const defaultDeadline = 24 * time.Hour

// openImage opens the bundle's file: the transfer's limits (retries,
// minimum rate, deadline) name themselves when a store trickles, cuts or
// never ends.
func openImage(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("image", s3.Redact(st.Image))
	image, pin, err := bundle.SplitPin(st.Image)
	if err != nil {
		return r.refuse("bad image reference", plan.CheckPin, err.Error(), "give the URL alone, or URL#sha256=DIGEST with the 64 hex digits thaw inspect shows")
	}
	st.Image = image
	deadline := st.Deadline
	if deadline == 0 && st.Mode == Agent {
		deadline = defaultDeadline
	}
	opt := httpra.Options{Token: st.Token, Logf: r.logf, Retries: st.Retries, MinRate: st.MinRate, Deadline: deadline}
	if presigned(image) {
		opt.Token = ""
	}
	var blob Blob
	if st.Follow && firstStage(r) {
		blob, err = r.openPrecopy(ctx, image, opt)
	} else {
		blob, err = r.env.Store.Open(ctx, image, opt)
	}
	if err != nil {
		return r.fail(err)
	}
	// A presigned list (thaw presign) names the bundle object and its
	// chunks, each by a URL that holds its own signature.
	l, err := ReadList(blob)
	if l != nil {
		list := blob
		blob, st.Chunks, err = openList(ctx, r.env.Store, l, opt)
		list.Close()
		if err != nil {
			return r.fail(err)
		}
		r.logf("%s is a presigned list: the bundle and its chunks are read through their own URLs", s3.Redact(image))
	} else if err != nil {
		blob.Close()
		return r.fail(err)
	}
	st.onClose(func() { blob.Close() })
	st.pin, st.blob = pin, blob
	r.rep.Done(fmt.Sprintf("%d MiB", blob.Size()>>20))
	return nil
}

// signature opens the bundle's index with the first trusted key that
// verifies it, checks the pin and unlocks an encrypted bundle.
func signature(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("signature", "index signature")
	keys := st.Trust.Keys
	if st.Params != nil && st.Params.PubKey != "" {
		// Keys built into the agent are a pin: a key from the command
		// line (which whoever controls the boot menu or DHCP sets) is not
		// trusted beside them, unless the build allows it.
		if st.Trust.Pinned && len(keys) > 0 {
			return r.refuse("a key on the command line", plan.CheckPubkey,
				"this agent has keys built in (/etc/thaw/pubkeys): they are a pin, and thaw.pubkey= is not trusted beside them",
				"leave thaw.pubkey= out, or boot an agent built with mkinitramfs -allow-cmdline-key")
		}
		k, err := bundle.ParsePublicKey(st.Params.PubKey)
		if err != nil {
			return r.refuse("bad public key", plan.CheckSignature, err.Error(), "thaw.pubkey= takes the key line of a minisign .pub file (RW…); keys in /etc/thaw/pubkeys come from make initramfs PUBKEY=")
		}
		keys = append([]NamedKey{{k, "thaw.pubkey"}}, keys...)
	}
	if len(keys) == 0 && !st.Trust.Unverified {
		return r.refuse("no key to verify the image with", plan.CheckSignature, "no trusted key was given",
			"give the signer's public key (thaw.pubkey=RW…, or --pubkey FILE); thaw.insecure=1 skips the check")
	}
	var lastErr error
	by := "NOT VERIFIED: no key given"
	switch {
	case st.Bundle != nil && st.signer != nil:
		// A follow's second pass: the follow stage opened the bundle
		// with the key that verified the pre-copy.
		by = fmt.Sprintf("signed by key %016X (%s)", st.signer.Key.ID(), st.signer.Name)
	case st.Bundle == nil:
		for _, k := range keys {
			br, err := bundle.Open(st.blob, st.blob.Size(), &k.Key)
			if err == nil {
				st.Bundle, st.signer = br, &k
				by = fmt.Sprintf("signed by key %016X (%s)", k.Key.ID(), k.Name)
				break
			}
			lastErr = err
			if !errors.Is(err, bundle.ErrBadSignature) {
				break
			}
		}
		if st.Bundle == nil && len(keys) == 0 {
			st.Bundle, lastErr = bundle.Open(st.blob, st.blob.Size(), nil)
		}
	}
	if st.Bundle == nil {
		return r.openError(lastErr)
	}
	br := st.Bundle
	st.onClose(br.Close)
	if br.InStore() {
		if st.Chunks == nil {
			st.Chunks = ChunksBeside(r.env.Store, st.Image, httpra.Options{Token: st.Token, Logf: r.logf,
				Retries: st.Retries, MinRate: st.MinRate, Deadline: st.Deadline})
		}
		br.SetChunkSource(st.Chunks)
	}
	if err := bundle.CheckPin(br, st.pin); err != nil {
		return r.refuse("not the bundle asked for", plan.CheckPin, err.Error(), "give the URL of the bundle you mean, or its current digest after #sha256= (thaw inspect shows it)")
	}
	if err := r.checkFollowed(br); err != nil {
		return err
	}
	if br.Encrypted() {
		ids := st.Trust.Identities
		if st.Params != nil && st.Params.Identity != "" {
			fetched, err := r.fetchIdentity(ctx, st.Params.Identity)
			if err != nil {
				return err
			}
			ids = append(fetched, ids...)
		}
		if err := br.Unlock(ids...); err != nil {
			return r.refuse("the image cannot be decrypted here", plan.CheckIdentity, err.Error(),
				"give the identity of one of the bundle's recipients (--identity FILE; for the agent: mkinitramfs -identity FILE, or thaw.identity=https://…)")
		}
		r.logf("bundle encrypted to %s: decrypted with the identity given", strings.Join(br.Recipients(), ", "))
	} else {
		r.logf("bundle NOT ENCRYPTED (captured with --plaintext)")
	}
	r.logf("bundle id %s from %s, written %s; index sha256 %s", br.Label.ID, br.Label.Host, br.Label.Created, br.Digest())
	m := br.Manifest
	r.logf("bundle: %s, kernel %s, %d disk(s), %d MiB of memory image", m.Kind, m.Kernel.Release, len(m.Disks), imageBytes(br)>>20)
	r.rep.Done(by)
	return nil
}

// maxIdentity bounds what is read from thaw.identity=: an age identity
// file is a few hundred bytes.
const maxIdentity = 64 << 10

// fetchIdentity reads the age identities at ref (thaw.identity=: https://
// with the store's token, or a file on the stick). The bytes are parsed in
// memory and never logged.
func (r *run) fetchIdentity(ctx context.Context, ref string) ([]age.Identity, error) {
	ref = stickRef(ref)
	fix := "check thaw.identity= (the file thaw keygen --recipient wrote as PREFIX.identity, served over https with the read token, or on the stick)"
	blob, err := r.env.Store.Open(ctx, ref, httpra.Options{Token: r.st.Token, Logf: r.logf, Retries: r.st.Retries, MinRate: r.st.MinRate, Deadline: 5 * time.Minute})
	if err != nil {
		return nil, r.refuse("the identity cannot be read", plan.CheckIdentity, fmt.Sprintf("thaw.identity=%s: %v", ref, err), fix)
	}
	defer blob.Close()
	if blob.Size() > maxIdentity {
		return nil, r.refuse("the identity cannot be read", plan.CheckIdentity, fmt.Sprintf("thaw.identity=%s: %d bytes, more than an identity file (%d at most)", ref, blob.Size(), maxIdentity), fix)
	}
	buf := make([]byte, blob.Size())
	if _, err := blob.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, r.refuse("the identity cannot be read", plan.CheckIdentity, fmt.Sprintf("thaw.identity=%s: %v", ref, err), fix)
	}
	defer clear(buf)
	ids, err := age.ParseIdentities(bytes.NewReader(buf))
	if err != nil {
		return nil, r.refuse("the identity cannot be read", plan.CheckIdentity, fmt.Sprintf("thaw.identity=%s: not an age identity file: %v", ref, err), fix)
	}
	r.logf("identity from %s: %d key(s)", ref, len(ids))
	return ids, nil
}

// openError turns a failure to open the bundle into a refusal (its bytes
// are not a trusted bundle) or, for a transfer that failed, an error.
func (r *run) openError(err error) error {
	var ne *httpra.NetError
	var se *httpra.StatusError
	var de *httpra.DeadlineError
	switch {
	case errors.Is(err, bundle.ErrBadSignature), errors.Is(err, bundle.ErrUnsigned):
		return r.refuse("the image is not trusted", plan.CheckSignature, err.Error(), "restore only bundles signed by a key you trust: check the key and the image's address")
	case errors.As(err, &ne), errors.As(err, &se), errors.As(err, &de), errors.Is(err, httpra.ErrClosed), errors.Is(err, context.Canceled):
		return r.fail(fmt.Errorf("reading the bundle's index: %w", err))
	}
	return r.refuse("the image cannot be read", plan.CheckImage, err.Error(), "the file is not a whole thaw bundle: capture or export it again, or check the store's disk")
}

func imageBytes(br *bundle.Reader) int64 {
	if br.Manifest.Image == nil {
		return 0
	}
	if s := br.Index.Stream(br.Manifest.Image.Stream); s != nil {
		return s.Size
	}
	return 0
}

// probeMachine profiles this machine (or takes the saved profile).
func probeMachine(ctx context.Context, r *run) error {
	if r.st.Target != nil {
		r.st.Machine = r.st.Target
		return nil
	}
	r.rep.Begin("probe", "this machine")
	m, err := r.env.Machine.Probe()
	if err != nil {
		return r.fail(err)
	}
	r.st.Machine = m
	r.rep.Done(fmt.Sprintf("%d CPU(s) %s, %d MiB RAM, %d PCI devices, disks %s", m.CPU.Count, m.CPU.Name, m.MemoryBytes>>20, len(m.PCI), describeDisks(m.Disks)))
	return nil
}

func orAuto(s string) string {
	if s == "" {
		return "auto"
	}
	return s
}

func describeDisks(ds []manifest.Disk) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%s %d MiB", d.Name, d.Size>>20))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// loadStage2 reads what the first stage decided and checks that the
// bundle is the one it verified and wrote.
func loadStage2(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("stage2", "the first stage's decisions")
	s2, err := r.env.Stage2.Load()
	if err != nil {
		return r.fail(err)
	}
	st.Stage2, st.Wrote, st.Targets = s2, s2.Disks, s2.Disks
	st.Payload, st.Release, st.Path, st.ResumeArgs = s2.Payload, s2.Release, s2.Resume, s2.ResumeArgs
	for k, v := range s2.Stage1 {
		st.Times["1."+k] = v
	}
	sum := sha256.Sum256(st.Bundle.IndexRaw)
	if hex.EncodeToString(sum[:]) != s2.IndexSHA256 {
		return r.refuse("the image changed between the stages", plan.CheckImage, "the bundle's index differs from the one stage 1 verified and wrote", "restart the restore from stage 1")
	}
	r.rep.Done(fmt.Sprintf("disks %s written by stage 1, resume %s", strings.Join(s2.Disks, ","), s2.Resume))
	return nil
}

// firmware writes the source's firmware ranges (ACPI tables and the
// like) back into physical memory: the memory map is the source's now.
func firmware(ctx context.Context, r *run) error {
	m := r.st.Bundle.Manifest
	r.rep.Begin("firmware", fmt.Sprintf("%d source non-RAM range(s) → physical memory", len(m.NonRAM)))
	n := 0
	for _, rg := range m.NonRAM {
		if rg.Stream == "" {
			continue
		}
		sr, err := r.st.Bundle.OpenStream(rg.Stream)
		if err != nil {
			return r.fail(err)
		}
		b, err := io.ReadAll(sr)
		if err != nil {
			return r.fail(err)
		}
		if uint64(len(b)) != rg.End-rg.Start {
			return r.fail(fmt.Errorf("stream %s holds %d bytes, range %#x-%#x needs %d", rg.Stream, len(b), rg.Start, rg.End, rg.End-rg.Start))
		}
		if cur, err := r.env.Firmware.Read(rg.Start, uint64(len(b))); err == nil && bytes.Equal(cur, b) {
			continue // this firmware laid out the same bytes
		}
		if err := r.env.Firmware.Write(rg.Start, b); err != nil {
			// ROM and device windows do not take writes; tables in RAM do.
			r.logf("warning: %#x-%#x (type %d) could not be written back: %v", rg.Start, rg.End, rg.Type, err)
			continue
		}
		r.logf("%#x-%#x (type %d): %d KiB written back", rg.Start, rg.End, rg.Type, len(b)>>10)
		n += len(b)
	}
	r.rep.Done(fmt.Sprintf("%d KiB written back", n>>10))
	return nil
}

// releaseList is the PCI devices of this machine that the image kernel
// will probe afresh: the targets of redirected disks and rebound NICs.
func releaseList(pl *plan.Plan) []string {
	var out []string
	for _, d := range pl.Devices {
		if (d.Action == plan.Redirect || d.Action == plan.Rebind) && d.Target != nil && d.Target.PCI != "" && !slices.Contains(out, d.Target.PCI) {
			out = append(out, d.Target.PCI)
		}
	}
	return out
}
