package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"aead.dev/minisign"
	"filippo.io/age"

	"github.com/thawlinux/thaw/agent/coldplug"
	"github.com/thawlinux/thaw/agent/console"
	"github.com/thawlinux/thaw/agent/physmem"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/agent/snapshot"
	"github.com/thawlinux/thaw/agent/stage2"
	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/mailbox"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/kexec"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/dhcp"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"golang.org/x/sys/unix"
)

const agentHelp = `
The restore agent: the initramfs's uinit on the target machine. It reads
its instructions from the kernel command line (thaw.image=, thaw.pubkey=,
thaw.disk=, thaw.token=, thaw.log=, thaw.resume=, thaw.area=,
thaw.insecure=; see netfetch/bootparam), and then, stage by stage on the
console:

  drivers   load the agent kernel's modules for the PCI and virtio devices
            present (coldplug: modalias against modules.alias)
  dhcp      DHCPv4 on every link with carrier
  image     open the bundle over HTTP(S) (range requests, resumable)
  signature verify its index against thaw.pubkey= or a key baked into the
            initramfs (/etc/thaw/pubkeys); unsigned bundles only with
            thaw.insecure=1
  probe     this machine: CPU, memory map, PCI, disks
  plan      the bundle's source against this machine: CPU flags, RAM,
            disks, drivers; a refusal stops here and says why and how to
            fix it, with nothing written
  verify    every chunk of the bundle, before anything is written
  write     the disk streams onto the planned disks (signature last)
  restore   direct (default): the memory image goes to this kernel's
            /dev/snapshot, which jumps into it. kexec (thaw.resume=kexec):
            the image is written in the kernel's format to thaw.area= and
            the image kernel is booted with its own initrd and resume=.
            When this machine's memory map differs from the source's, the
            agent first boots itself again with the source's e820 table
            (stage 2), writes the source's firmware ranges back, and then
            restores either way.

On a refusal or error the agent exits and the rescue shell starts.
Exit status 3: refused.
`

// agent is one run of the agent.
type agent struct {
	ctx     context.Context
	ui      *console.UI
	p       *bootparam.Params
	raw     string // the kernel command line
	dry     bool
	br      *bundle.Reader
	pin     string // thaw.image=URL#sha256=: the index digest asked for
	closer  func()
	logq    chan string
	logbuf  []string // lines before the network is up
	logn    sync.WaitGroup
	logEnd  chan struct{} // closed when the sender has stopped
	times   map[string]float64
	wrote   []string // the disks opened for writing
	sameMap bool
	payload []byte   // the device plan and its modules, for the image's mailbox
	release []string // PCI devices the image kernel drives afresh
}

func runAgent(args []string) error {
	fs := newFlags("agent", "[--cmdline STRING] [--dry-run]", agentHelp)
	cmdline := fs.String("cmdline", "", "instructions instead of /proc/cmdline")
	dry := fs.Bool("dry-run", false, "stop after the plan; write nothing")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	raw := *cmdline
	if raw == "" {
		b, err := os.ReadFile(bootparam.ProcCmdline)
		if err != nil {
			return err
		}
		raw = strings.TrimSpace(string(b))
	}
	a := &agent{ctx: context.Background(), raw: raw, dry: *dry, times: map[string]float64{}}
	outs := []io.Writer{os.Stdout}
	if vga, err := os.OpenFile("/dev/tty0", os.O_WRONLY, 0); err == nil && !sameFile("/dev/tty0", "/dev/console") {
		outs = append(outs, vga)
	}
	a.ui = console.New(a.sink, outs...)
	err := a.run()
	if a.closer != nil {
		a.closer()
	}
	if err != nil {
		unix.Sync()
		footer := console.NothingWritten
		if len(a.wrote) > 0 {
			footer = "THE DISKS WERE WRITTEN (" + strings.Join(a.wrote, ", ") + ") but the server was not resumed: do not boot them; fix the cause and run the restore again."
		}
		var r *refusedError
		if errors.As(err, &r) {
			a.ui.Refused("REFUSED: "+r.title, r.rs, footer)
			a.flushLog()
			return &exitError{3, errors.New("refused")}
		}
		a.ui.Refused("FAILED", []console.Refusal{{Check: "error", Reason: err.Error(), Hint: hintFor(err)}}, footer)
		a.flushLog()
		return &exitError{1, err}
	}
	return nil
}

// refusedError is a refusal: nothing was written.
type refusedError struct {
	title string
	rs    []console.Refusal
}

func (e *refusedError) Error() string { return e.title }

func refuse(title, check, reason, hint string) error {
	return &refusedError{title, []console.Refusal{{Check: check, Reason: reason, Hint: hint}}}
}

func hintFor(err error) string {
	var ne *httpra.NetError
	var se *httpra.StatusError
	switch {
	case errors.As(err, &ne):
		return "check the image store's address and that it is reachable from this network"
	case errors.As(err, &se):
		return "check thaw.image= (the bundle's URL) and thaw.token="
	}
	return "see the lines above; the rescue shell is on this console"
}

// sink queues a console line for the remote log; lines before the
// network is up wait in logbuf. The UI calls it under its lock.
func (a *agent) sink(line string) {
	if a.logq == nil {
		if len(a.logbuf) < 4096 {
			a.logbuf = append(a.logbuf, line)
		}
		return
	}
	a.logn.Add(1)
	select {
	case a.logq <- line:
	default: // the log never blocks the restore
		a.logn.Done()
	}
}

// startLog starts sending the console to thaw.log=, beginning with what
// it printed before the network was up.
func (a *agent) startLog() {
	if a.p.Log == "" {
		return
	}
	q := make(chan string, 4096)
	a.logn.Add(len(a.logbuf))
	for _, l := range a.logbuf {
		q <- l
	}
	a.logbuf = nil
	a.logq = q
	a.logEnd = make(chan struct{})
	go func() {
		defer close(a.logEnd)
		for line := range q {
			ctx, cancel := context.WithTimeout(a.ctx, 3*time.Second)
			httpra.PostLog(ctx, a.p.Log, []byte(line), httpra.Options{Token: a.p.Token, Retries: 1})
			cancel()
			a.logn.Done()
		}
	}()
}

// stopLog sends what is queued (at most 5 s) and stops the sender, so that
// no goroutine of the agent runs any more; later lines stay on the console
// (and in logbuf, unsent).
func (a *agent) stopLog() {
	if a.logq == nil {
		return
	}
	a.flushLog()
	q := a.logq
	a.logq = nil
	close(q)
	select {
	case <-a.logEnd:
	case <-time.After(5 * time.Second):
	}
}

// flushLog waits (at most 5 s) until the remote log has sent every line.
func (a *agent) flushLog() {
	done := make(chan struct{})
	go func() { a.logn.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// record sends one machine-readable line to thaw.log= only (not to the
// console): "thaw-KIND-json" and the value as JSON. The probe record is a
// profile for "thaw plan --target"; the plan record is the plan as
// "thaw plan --json" prints it.
func (a *agent) record(kind string, v any) {
	if a.logq == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	a.sink("thaw-" + kind + "-json " + string(b))
}

func (a *agent) stage(name string, t0 time.Time) { a.times[name] = time.Since(t0).Seconds() }

func (a *agent) run() error {
	ui := a.ui
	var err error
	ui.Banner("thaw restore agent")
	ui.Begin("params", "kernel command line")
	if a.p, err = bootparam.Parse(a.raw); err != nil {
		ui.Fail("bad parameters")
		return refuse("bad boot parameters", "params", err.Error(), "fix the thaw.* parameters on the kernel command line (PXE script or boot menu)")
	}
	if err := a.p.Validate(true); err != nil {
		ui.Fail("incomplete parameters")
		return refuse("bad boot parameters", "params", err.Error(), "fix the thaw.* parameters on the kernel command line (PXE script or boot menu)")
	}
	for _, w := range a.p.Warnings {
		ui.Logf("warning: %s", w)
	}
	stageN := max(a.p.Stage, 1)
	ui.Done(fmt.Sprintf("stage %d, image %s, disks %s, resume %s", stageN, a.p.Image, orAuto(strings.Join(a.p.Disks, ",")), orAuto(a.p.Resume)))

	t0 := time.Now()
	ui.Begin("drivers", "coldplug")
	cp, err := coldplug.Run(coldplug.Config{Logf: ui.Logf})
	if err != nil {
		ui.Fail(err.Error())
		return err
	}
	for _, d := range cp.Devices {
		if d.Err != "" {
			ui.Logf("%s (%s): %s", d.Path, d.Modalias, d.Err)
		}
	}
	for _, d := range cp.Unclaimed() {
		if d.Err == "" {
			ui.Logf("no driver in the agent kernel for %s (%s)", d.Path, d.Modalias)
		}
	}
	ui.Done(fmt.Sprintf("%d modules loaded: %s", len(cp.Loaded), strings.Join(cp.Loaded, " ")))
	a.stage("drivers", t0)

	t0 = time.Now()
	ui.Begin("dhcp", "DHCPv4 on every link with carrier")
	lease, err := dhcp.Configure(a.ctx, dhcp.Config{Iface: a.p.Iface, Timeout: 10 * time.Second, Retries: 4, LinkWait: 10 * time.Second, Logf: ui.Logf})
	if err != nil {
		ui.Fail(err.Error())
		return fmt.Errorf("dhcp: %w", err)
	}
	ui.Done(fmt.Sprintf("%s %s via %v (server %v, %.1fs)", lease.Iface, lease.Addr.String(), lease.Router, lease.Server, lease.Took.Seconds()))
	a.stage("dhcp", t0)
	a.startLog()

	if err := a.openImage(); err != nil {
		return err
	}
	m := a.br.Manifest

	if a.p.Stage == 2 {
		return a.stage2()
	}

	t0 = time.Now()
	ui.Begin("probe", "this machine")
	target, err := probe.Probe("/")
	if err != nil {
		ui.Fail(err.Error())
		return err
	}
	ui.Done(fmt.Sprintf("%d CPU(s) %s, %d MiB RAM, %d PCI devices, disks %s", target.CPU.Count, target.CPU.Name, target.MemoryBytes>>20, len(target.PCI), describeDisks(target.Disks)))
	a.stage("probe", t0)

	t0 = time.Now()
	ui.Begin("plan", fmt.Sprintf("source %s (%s) against this machine", orAuto(m.Hostname), m.Kernel.Release))
	aliases, err := bundleAliases(a.br)
	if err != nil {
		ui.Fail(err.Error())
		return err
	}
	pl := plan.Make(m, target, aliases, plan.Options{Disks: a.p.Disks, HasData: diskHasData})
	a.sameMap = pl.SameMap
	for _, d := range pl.Drivers {
		mod := d.Module
		if mod == "" {
			mod = "(none)"
		} else if d.Builtin {
			mod += " (built in)"
		} else if d.SeenOnSource {
			mod += " (bound to this device on the source)"
		}
		ui.Logf("driver %s %-5s %s → %s", d.PCI, d.Kind, d.Modalias, mod)
	}
	for _, d := range pl.Devices {
		ui.Logf("device %s", deviceLine(d))
	}
	for _, n := range pl.Notes {
		ui.Logf("note: %s", n)
	}
	a.record("probe", target)
	a.record("plan", pl)
	a.release = releaseList(pl)
	if m.Mailbox != nil && pl.OK {
		if a.payload, err = a.makePayload(pl); err != nil {
			pl.Refusals = append(pl.Refusals, plan.Refusal{Check: "mailbox", Reason: err.Error(), Hint: "capture the server again with this version of thaw"})
		} else {
			ui.Logf("mailbox: device plan and %d module(s), %d KiB of the capture's %d KiB", len(pl.Modules), len(a.payload)>>10, len(m.Mailbox.PFNs)*4)
		}
	}
	path := a.p.Resume
	if path == "" || path == "auto" {
		path = "direct"
	}
	pl.Refusals = append(pl.Refusals, a.bundleChecks(path)...)
	pl.OK = len(pl.Refusals) == 0
	if !pl.OK {
		ui.Fail(fmt.Sprintf("%d refusal(s)", len(pl.Refusals)))
		var rs []console.Refusal
		for _, r := range pl.Refusals {
			rs = append(rs, console.Refusal{Check: r.Check, Reason: r.Reason, Hint: r.Hint})
		}
		return &refusedError{"this machine cannot take the image", rs}
	}
	var targets []string
	for _, d := range pl.Disks {
		targets = append(targets, "/dev/"+d.Target)
	}
	replay := !pl.SameMap
	how := path
	if replay {
		how += ", memory map differs: stage 2 with the source's e820"
	}
	ui.Done(fmt.Sprintf("ok: disks %s, resume %s", strings.Join(targets, ","), how))
	a.stage("plan", t0)
	if a.dry {
		ui.Banner("dry run: nothing written")
		return nil
	}
	// Nothing has been written yet; every check comes before the first
	// write.
	var area *blockdev.Dev
	if path == "kexec" && a.p.Area != "" {
		if area, err = openResumeArea("/dev/"+a.p.Area, targets, m); err != nil {
			return refuse("bad resume area", "resume", err.Error(), "thaw.area= must name a swap-formatted partition that is not on a thaw.disk= target and not a swap of the image")
		}
		defer area.Close()
	}
	if err := a.verify(); err != nil {
		return err
	}
	devs, held, err := a.writeDisks(targets)
	if err != nil {
		return err
	}
	var resumeArgs []string
	if path == "kexec" {
		t0 = time.Now()
		where := "the disk that carries it"
		if area != nil {
			where = area.Ref
		}
		ui.Begin("area", "resume image → "+where)
		if resumeArgs, err = writeResume(a.br, devs, area, held, a.inject); err != nil {
			ui.Fail(err.Error())
			return err
		}
		ui.Done("written and verified, " + strings.Join(resumeArgs, " "))
		a.stage("area", t0)
	}
	if replay {
		return a.kexecStage2(targets, path, resumeArgs)
	}
	if path == "kexec" {
		return a.kexecImage(resumeArgs)
	}
	return a.direct()
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

// deviceLine renders one row of the device plan for the console.
func deviceLine(d plan.Device) string {
	src := d.Source.Name
	if d.Source.PCI != "" {
		src += " @" + d.Source.PCI
	}
	tgt := "—"
	if d.Target != nil {
		tgt = d.Target.PCI
		if d.Target.Name != "" {
			tgt = d.Target.Name + " @" + d.Target.PCI
		}
		if d.Target.Driver != "" {
			tgt += " " + d.Target.Driver + " (" + d.Target.Origin + ")"
		}
	}
	s := fmt.Sprintf("%-4s %-22s → %-40s %-8s %s", d.Kind, src, tgt, strings.ToUpper(d.Action), d.Why)
	if d.Fix != "" {
		s += "; fix: " + d.Fix
	}
	return s
}

// makePayload encodes the device plan and the image kernel's modules it
// names for the image's mailbox.
func (a *agent) makePayload(pl *plan.Plan) ([]byte, error) {
	var mods io.Reader
	if len(pl.Modules) > 0 {
		sr, err := a.br.OpenStream("modules")
		if err != nil {
			return nil, err
		}
		mods = sr
	}
	return pl.Payload(a.br.Manifest, mods)
}

// inject writes the payload into the mailbox pages of the memory stream.
func (a *agent) inject(r io.Reader) (io.Reader, error) {
	m := a.br.Manifest
	if a.payload == nil || m.Mailbox == nil {
		return r, nil
	}
	nonce, err := plan.Nonce(m)
	if err != nil {
		return nil, err
	}
	return mailbox.NewInjector(r, m.Mailbox.PFNs, nonce, a.payload)
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

// keys are the trusted keys: thaw.pubkey= and the initramfs's own.
// identitiesDir holds the age identities baked into the initramfs
// (mkinitramfs -identity): they decrypt encrypted bundles. They never come
// from the kernel command line.
const identitiesDir = "/etc/thaw/identities"

func agentIdentities() ([]age.Identity, error) {
	files, _ := filepath.Glob(identitiesDir + "/*")
	sort.Strings(files)
	return loadIdentities(files)
}

// allowCmdlineKey is in an initramfs built to take thaw.pubkey= beside
// its baked-in keys (mkinitramfs -allow-cmdline-key).
const allowCmdlineKey = "/etc/thaw/allow-cmdline-key"

var errPinnedKeys = errors.New("this agent has keys built in (/etc/thaw/pubkeys): they are a pin, and thaw.pubkey= is not trusted beside them")

func (a *agent) keys() ([]minisign.PublicKey, []string, error) {
	var keys []minisign.PublicKey
	var names []string
	files, _ := filepath.Glob("/etc/thaw/pubkeys/*")
	sort.Strings(files)
	if a.p.PubKey != "" {
		// Keys baked into the initramfs are a pin: a key from the command
		// line (which whoever controls the boot menu or DHCP sets) is
		// not trusted beside them, unless the build allows it.
		if _, err := os.Stat(allowCmdlineKey); len(files) > 0 && err != nil {
			return nil, nil, errPinnedKeys
		}
		k, err := bundle.ParsePublicKey(a.p.PubKey)
		if err != nil {
			return nil, nil, err
		}
		keys, names = append(keys, k), append(names, "thaw.pubkey")
	}
	for _, f := range files {
		k, err := bundle.LoadPublicKey(f)
		if err != nil {
			return nil, nil, err
		}
		keys, names = append(keys, k), append(names, f)
	}
	return keys, names, nil
}

// defaultDeadline bounds the agent's whole download when thaw.deadline=
// is not given.
const defaultDeadline = 24 * time.Hour

func (a *agent) openImage() error {
	ui := a.ui
	t0 := time.Now()
	ui.Begin("image", a.p.Image)
	// The transfer's limits (thaw.retries=, thaw.minrate=, thaw.deadline=):
	// a store that trickles, cuts or never ends is given up on, and the
	// error names the limit.
	deadline := a.p.Deadline
	if deadline == 0 {
		deadline = defaultDeadline
	}
	image, pin, err := bundle.SplitPin(a.p.Image)
	if err != nil {
		ui.Fail(err.Error())
		return refuse("bad image reference", "pin", err.Error(), "thaw.image=URL#sha256=DIGEST with the 64 hex digits thaw inspect shows, or the URL alone")
	}
	a.pin = pin
	ra, err := httpra.Open(a.ctx, image, httpra.Options{Token: a.p.Token, Logf: ui.Logf,
		Retries: a.p.Retries, MinRate: a.p.MinRate, Deadline: deadline})
	if err != nil {
		ui.Fail(err.Error())
		return err
	}
	ui.Done(fmt.Sprintf("%d MiB", ra.Size()>>20))
	a.stage("image", t0)

	t0 = time.Now()
	ui.Begin("signature", "index signature")
	keys, names, err := a.keys()
	if errors.Is(err, errPinnedKeys) {
		ui.Fail(err.Error())
		ra.Close()
		return refuse("a key on the command line", "pubkey", err.Error(), "leave thaw.pubkey= out, or boot an agent built with mkinitramfs -allow-cmdline-key")
	}
	if err != nil {
		ui.Fail(err.Error())
		ra.Close()
		return refuse("bad public key", "signature", err.Error(), "thaw.pubkey= takes the key line of a minisign .pub file (RW…); keys in /etc/thaw/pubkeys come from make initramfs PUBKEY=")
	}
	if len(keys) == 0 && !a.p.Insecure {
		ui.Fail("no trusted key")
		ra.Close()
		return refuse("no key to verify the image with", "signature", "neither thaw.pubkey= nor a key in the initramfs (make initramfs PUBKEY=…)", "give thaw.pubkey=RW… (the key line of the signer's .pub); thaw.insecure=1 skips the check")
	}
	var lastErr error
	for i, k := range keys {
		br, err := bundle.Open(ra, ra.Size(), &k)
		if err == nil {
			a.br, a.closer = br, func() { br.Close(); ra.Close() }
			ui.Done(fmt.Sprintf("signed by key %016X (%s)", k.ID(), names[i]))
			break
		}
		lastErr = err
		if !errors.Is(err, bundle.ErrBadSignature) {
			break
		}
	}
	if a.br == nil && len(keys) == 0 {
		br, err := bundle.Open(ra, ra.Size(), nil)
		if err == nil {
			a.br, a.closer = br, func() { br.Close(); ra.Close() }
			ui.Done("NOT VERIFIED: thaw.insecure=1")
		}
		lastErr = err
	}
	if a.br == nil && !errors.Is(lastErr, bundle.ErrBadSignature) && !errors.Is(lastErr, bundle.ErrUnsigned) {
		ui.Fail(lastErr.Error())
		ra.Close()
		return fmt.Errorf("reading the bundle's index: %w", lastErr)
	}
	if a.br == nil {
		ui.Fail(lastErr.Error())
		ra.Close()
		return refuse("the image is not trusted", "signature", lastErr.Error(), "restore only images signed by a key you trust: check thaw.pubkey= and the image URL")
	}
	if err := bundle.CheckPin(a.br, a.pin); err != nil {
		a.closer()
		a.br = nil
		return refuse("not the bundle asked for", "pin", err.Error(), "boot with the URL of the bundle you mean, or its current digest after #sha256= (thaw inspect shows it)")
	}
	if a.br.Encrypted() {
		ids, err := agentIdentities()
		if err == nil {
			err = a.br.Unlock(ids...)
		}
		if err != nil {
			a.closer()
			a.br = nil
			return refuse("the image cannot be decrypted here", "identity", err.Error(), "boot an agent built with the identity of one of the bundle's recipients (mkinitramfs -identity FILE)")
		}
		ui.Logf("bundle encrypted to %s: decrypted with this agent's identity", strings.Join(a.br.Recipients(), ", "))
	} else {
		ui.Logf("bundle NOT ENCRYPTED (captured with --plaintext)")
	}
	a.stage("signature", t0)
	ui.Logf("bundle id %s from %s, written %s; index sha256 %s", a.br.Label.ID, a.br.Label.Host, a.br.Label.Created, a.br.Digest())
	m := a.br.Manifest
	ui.Logf("bundle: %s, kernel %s, %d disk(s), %d MiB of memory image", m.Kind, m.Kernel.Release, len(m.Disks), imageBytes(a.br)>>20)
	return nil
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

func (a *agent) verify() error {
	t0 := time.Now()
	a.ui.Begin("verify", "every chunk, before any write")
	if err := a.br.Verify(func(d, t int64) { a.ui.Progress("verify", d, t) }); err != nil {
		a.ui.Fail(err.Error())
		return refuse("the image is damaged", "verify", err.Error(), "nothing was written; upload the bundle again or check the store's disk")
	}
	a.ui.Done("all chunks match the signed index")
	a.stage("verify", t0)
	return nil
}

// writeDisks opens the planned disks and writes the bundle's disk streams
// onto them (restore's writeTargets); it returns the open disks and the
// held resume header of an image carried inside a disk.
func (a *agent) writeDisks(targets []string) ([]*blockdev.Dev, []byte, error) {
	m := a.br.Manifest
	t0 := time.Now()
	a.ui.Begin("write", fmt.Sprintf("%d disk(s)", len(targets)))
	devs := make([]*blockdev.Dev, len(targets))
	rds := make([]restoreDisk, len(targets))
	for i, t := range targets {
		dev, err := blockdev.Open(t, true)
		if err != nil {
			a.ui.Fail(err.Error())
			return nil, nil, err
		}
		devs[i], rds[i] = dev, restoreDisk{Stream: m.Disks[i].Stream, Target: t, Bytes: m.Disks[i].Size}
		a.closeAlso(dev)
	}
	a.wrote = targets
	held, err := writeTargets(a.br, devs, rds, func(t string) func(int64, int64) {
		return func(d, tot int64) { a.ui.Progress(t, d, tot) }
	}, a.ui.Logf)
	if err != nil {
		a.ui.Fail(err.Error())
		return nil, nil, err
	}
	a.ui.Done(fmt.Sprintf("%d disk(s) written and synced", len(targets)))
	a.stage("write", t0)
	return devs, held, nil
}

// closeAlso closes dev when the agent's bundle is closed.
func (a *agent) closeAlso(dev *blockdev.Dev) {
	prev := a.closer
	a.closer = func() {
		dev.Close()
		if prev != nil {
			prev()
		}
	}
}

// bundleChecks are the checks of the bundle against the chosen path that
// the plan does not make; all run before anything is written.
func (a *agent) bundleChecks(path string) []plan.Refusal {
	m := a.br.Manifest
	var rs []plan.Refusal
	if m.Image == nil || a.br.Index.Stream(m.Image.Stream) == nil {
		rs = append(rs, plan.Refusal{Check: "image", Reason: "the bundle carries no memory image", Hint: "restore a bundle made by thaw capture or thaw export"})
	}
	for _, d := range m.Disks {
		if a.br.Index.Stream(d.Stream) == nil {
			rs = append(rs, plan.Refusal{Check: "image", Reason: "the bundle names no stream for disk " + d.Name, Hint: "the bundle is incomplete: capture or export it again"})
		}
	}
	switch path {
	case "direct":
		if err := snapshot.Available(); err != nil {
			rs = append(rs, plan.Refusal{Check: "resume", Reason: err.Error(), Hint: "use thaw.resume=kexec with thaw.area="})
		}
	case "kexec":
		for _, f := range []string{"vmlinuz", "initrd"} {
			if a.br.Index.Stream(f) == nil {
				rs = append(rs, plan.Refusal{Check: "resume", Reason: "the bundle carries no " + f + " of the image kernel", Hint: "use thaw.resume=direct"})
			}
		}
		if a.p.Area == "" && (m.Resume == nil || !m.Resume.InDisk) {
			rs = append(rs, plan.Refusal{Check: "resume", Reason: "thaw.resume=kexec needs a resume area for the image", Hint: "add thaw.area=DEV: a swap-formatted partition that is not on a thaw.disk= target, or use thaw.resume=direct"})
		}
	}
	if !a.sameMap && len(m.NonRAM) == 0 {
		a.ui.Logf("warning: the bundle carries no firmware ranges; after the memory-map replay the resumed kernel may find other ACPI tables")
	}
	return rs
}

// direct hands the memory image to this kernel.
func (a *agent) direct() error {
	m := a.br.Manifest
	a.ui.Begin("restore", "memory image → /dev/snapshot")
	a.ui.Logf("timing: %s", a.timing())
	bs, err := a.br.OpenStream(m.Image.Stream)
	if err != nil {
		a.ui.Fail(err.Error())
		return err
	}
	sr, err := a.inject(bs)
	if err != nil {
		a.ui.Fail(err.Error())
		return err
	}
	a.flushLog()
	err = snapshot.RestoreWith(sr, m.Image.Platform, a.ui.Logf, func() {
		// Nothing of this process may run while it freezes itself.
		a.stopLog()
		if a.closer != nil {
			a.closer()
			a.closer = nil
		}
		httpra.CloseIdleConnections()
		// The devices the image kernel probes afresh are let go now,
		// quiesced and powered, not put to sleep by this kernel.
		for _, addr := range a.release {
			drv, err := coldplug.Release("/sys", addr)
			switch {
			case err != nil:
				a.ui.Logf("warning: %v", err)
			case drv != "":
				a.ui.Logf("released %s from %s for the image kernel's own driver", addr, drv)
			}
		}
	})
	a.ui.Fail(err.Error())
	return fmt.Errorf("direct restore: %w", err)
}

func (a *agent) timing() string {
	var names []string
	for n := range a.times {
		names = append(names, n)
	}
	sort.Strings(names)
	var s []string
	for _, n := range names {
		s = append(s, fmt.Sprintf("%s=%.1fs", n, a.times[n]))
	}
	return strings.Join(s, " ")
}

// imageCmdline is the source's command line with the resume arguments
// replaced.
func imageCmdline(src string, resumeArgs []string) string {
	var out []string
	for _, f := range strings.Fields(src) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "resume", "resume_offset", "noresume", "BOOT_IMAGE", "initrd":
			continue
		}
		out = append(out, f)
	}
	return strings.Join(append(out, resumeArgs...), " ")
}

// kexecImage boots the image kernel with its own initrd and resume=; the
// running kernel's memory map is the source's (same hardware, or stage 2).
func (a *agent) kexecImage(resumeArgs []string) error {
	m := a.br.Manifest
	t0 := time.Now()
	a.ui.Begin("kexec", "image kernel "+m.Kernel.Release)
	dir, err := os.MkdirTemp("", "image")
	if err != nil {
		return err
	}
	img := kexec.Image{Cmdline: imageCmdline(m.Kernel.Cmdline, resumeArgs)}
	for _, f := range []struct {
		stream string
		dst    *string
	}{{"vmlinuz", &img.Kernel}, {"initrd", &img.Initrd}} {
		if a.br.Index.Stream(f.stream) == nil {
			a.ui.Fail("no " + f.stream)
			return refuse("the bundle carries no image kernel", "kexec", "stream "+f.stream+" is missing", "use thaw.resume=direct")
		}
		*f.dst = filepath.Join(dir, f.stream)
		if err := extractStream(a.br, f.stream, *f.dst); err != nil {
			a.ui.Fail(err.Error())
			return err
		}
	}
	a.ui.Logf("cmdline: %s", img.Cmdline)
	if err := kexec.FileLoad(img); err != nil {
		a.ui.Fail(err.Error())
		return err
	}
	a.stage("kexec", t0)
	a.ui.Done("loaded; rebooting into it")
	a.ui.Logf("timing: %s", a.timing())
	a.flushLog()
	return kexec.Exec()
}

func extractStream(br *bundle.Reader, name, dst string) error {
	sr, err := br.OpenStream(name)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, sr); err != nil {
		f.Close()
		return fmt.Errorf("%s → %s: %w", name, dst, err)
	}
	return f.Close()
}

// kexecStage2 boots the agent again with the source's e820 table.
func (a *agent) kexecStage2(targets []string, path string, resumeArgs []string) error {
	m := a.br.Manifest
	t0 := time.Now()
	a.ui.Begin("stage2", "agent kernel with the source's memory map")
	sum := sha256.Sum256(a.br.IndexRaw)
	st := stage2.State{Image: a.p.Image, IndexSHA256: hex.EncodeToString(sum[:]), Disks: targets, Resume: path, ResumeArgs: resumeArgs, Stage1: a.times, Payload: a.payload, Release: a.release}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	initrd := "/tmp/stage2.cpio"
	f, err := os.Create(initrd)
	if err != nil {
		a.ui.Fail(err.Error())
		return err
	}
	// uinit.flags again: stage 2 must start "thaw agent" whatever the
	// first stage's init did with its own copy.
	bw := bufio.NewWriterSize(f, 1<<20)
	err = stage2.Pack(bw, "/", map[string][]byte{stage2.StatePath: js, "/etc/uinit.flags": []byte(`"agent"`)})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		a.ui.Fail(err.Error())
		return fmt.Errorf("stage 2 initramfs: %w", err)
	}
	if st, err := os.Stat(initrd); err == nil {
		a.ui.Logf("stage 2 initramfs: %d MiB", st.Size()>>20)
	}
	img := kexec.Image{Kernel: "/boot/vmlinuz", Initrd: initrd, Cmdline: withStage2(a.raw)}
	if _, err := kexec.LoadWithE820(img, m.E820, kexec.Options{Logf: a.ui.Logf}); err != nil {
		a.ui.Fail(err.Error())
		return err
	}
	os.Remove(initrd)
	a.stage("stage2", t0)
	a.ui.Done("loaded; rebooting into stage 2")
	a.ui.Logf("timing: %s", a.timing())
	a.flushLog()
	return kexec.Exec()
}

// stage2 runs after the agent kexec'd itself: the disks are written, the
// memory map is the source's. It writes the source's firmware ranges back,
// then restores.
func (a *agent) stage2() error {
	st, err := stage2.Load(stage2.StatePath)
	if err != nil {
		return err
	}
	a.wrote = st.Disks
	a.payload, a.release = st.Payload, st.Release
	for k, v := range st.Stage1 {
		a.times["1."+k] = v
	}
	sum := sha256.Sum256(a.br.IndexRaw)
	if hex.EncodeToString(sum[:]) != st.IndexSHA256 {
		return refuse("the image changed between the stages", "image", "the bundle's index differs from the one stage 1 verified and wrote", "restart the restore from stage 1")
	}
	m := a.br.Manifest
	t0 := time.Now()
	a.ui.Begin("firmware", fmt.Sprintf("%d source non-RAM range(s) → physical memory", len(m.NonRAM)))
	n := 0
	for _, r := range m.NonRAM {
		if r.Stream == "" {
			continue
		}
		sr, err := a.br.OpenStream(r.Stream)
		if err != nil {
			a.ui.Fail(err.Error())
			return err
		}
		b, err := io.ReadAll(sr)
		if err != nil {
			a.ui.Fail(err.Error())
			return err
		}
		if uint64(len(b)) != r.End-r.Start {
			return fmt.Errorf("stream %s holds %d bytes, range %#x-%#x needs %d", r.Stream, len(b), r.Start, r.End, r.End-r.Start)
		}
		if cur, err := physmem.Read(r.Start, uint64(len(b))); err == nil && bytes.Equal(cur, b) {
			continue // this firmware laid out the same bytes
		}
		if err := physmem.Write(r.Start, b); err != nil {
			// ROM and device windows do not take writes; tables in RAM do.
			a.ui.Logf("warning: %#x-%#x (type %d) could not be written back: %v", r.Start, r.End, r.Type, err)
			continue
		}
		a.ui.Logf("%#x-%#x (type %d): %d KiB written back", r.Start, r.End, r.Type, len(b)>>10)
		n += len(b)
	}
	a.ui.Done(fmt.Sprintf("%d KiB written back", n>>10))
	a.stage("firmware", t0)
	if st.Resume == "kexec" {
		return a.kexecImage(st.ResumeArgs)
	}
	return a.direct()
}

// withStage2 adds thaw.stage=2 to a kernel command line, before a "--"
// (after it, arguments go to init, not to the kernel's parameters).
func withStage2(cmdline string) string {
	padded := " " + cmdline + " "
	if i := strings.Index(padded, " -- "); i >= 0 {
		return strings.TrimSpace(padded[:i] + " thaw.stage=2" + padded[i:])
	}
	return strings.TrimSpace(cmdline) + " thaw.stage=2"
}
