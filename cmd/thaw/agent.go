package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/thawlinux/thaw/agent/console"
	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/netfetch/bootparam"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"golang.org/x/sys/unix"
)

const agentHelp = `
The restore agent: the initramfs's uinit on the target machine. It reads
its instructions from the kernel command line (thaw.image=, thaw.pubkey=,
thaw.disk=, thaw.token=, thaw.log=, thaw.resume=, thaw.area=,
thaw.kernel=, thaw.insecure=; see netfetch/bootparam), and then, stage by stage on the
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
  kernel    only when the memory maps differ (stage 2 below): the agent
            kernel, from the initramfs's copy or fetched from
            thaw.kernel=URL#sha256=DIGEST and checked, before any write
  verify    every chunk of the bundle, before anything is written: only
            when a target disk holds data, or with thaw.verify=first
  write     the disk streams onto the planned disks, each chunk fetched
            once (several at once), checked against the signed index and
            written (thaw.verify=stream: even onto disks holding data)
  restore   direct (default): the memory image goes to this kernel's
            /dev/snapshot, which jumps into it. kexec (thaw.resume=kexec):
            the image is written in the kernel's format into the server's
            own swap (the pages the capture reserved there) or to
            thaw.area=, and the image kernel is booted with its own initrd
            and resume=.
            When this machine's memory map differs from the source's, the
            agent first boots itself again with the source's e820 table
            (stage 2), writes the source's firmware ranges back, and then
            restores either way.

On a refusal or error the agent exits and the rescue shell starts.
Exit status 3: refused.
`

func runAgent(args []string) error {
	fs := newFlags("agent", "[--cmdline STRING] [--dry-run]", agentHelp)
	cmdline := fs.String("cmdline", "", "instructions instead of /proc/cmdline")
	dry := fs.Bool("dry-run", false, "stop after the plan; write nothing")
	asJSON := fs.Bool("json", false, "the stages as JSON lines and a refusal as JSON on stdout, instead of the console's stage list and box")
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
	if p, _ := bootparam.Parse(raw); p != nil && p.Rescue && *cmdline == "" {
		printRescue()
		return rescueShell()
	}
	limitMemory()
	rlog := restore.NewRemoteLog()
	outs := []io.Writer{os.Stdout}
	if vga, err := os.OpenFile("/dev/tty0", os.O_WRONLY, 0); err == nil && !sameFile("/dev/tty0", "/dev/console") {
		outs = append(outs, vga)
	}
	var tr transcript
	ui := console.New(func(line string) { rlog.Line(line); tr.line(line) }, outs...)
	var rep restore.Reporter = ui
	if *asJSON {
		rep = restore.NewJSONReporter(os.Stdout)
	} else {
		ui.Banner("thaw restore agent")
	}
	var st *restore.State
	env := restore.System(rlog)
	trust, err := restore.AgentTrust("/")
	if err == nil {
		cfg := restore.Config{Mode: restore.Agent, Cmdline: raw, DryRun: *dry, Trust: trust, Transcript: tr.bytes}
		st, err = restore.Run(context.Background(), env, rep, cfg)
		defer func() { st.Close() }()
	}
	if err != nil {
		unix.Sync()
		var wrote []string
		if st != nil {
			wrote = st.Wrote
		}
		logURL := ""
		if p, _ := bootparam.Parse(raw); p != nil {
			logURL = p.Log
		}
		return agentFailed(ui, rlog, err, wrote, logURL, *asJSON, func(outcome string) (string, func()) { return stickLog(ui, env, st, outcome) })
	}
	if (*dry || st.DryRun) && !*asJSON {
		ui.Banner("dry run: nothing written")
		if where, save := stickLog(ui, env, st, "dry-run"); where != "" {
			ui.Logf("log: %s", where)
			save()
		}
	}
	return nil
}

// stickLog names the file under thaw-logs/ on the thaw stick that save
// writes the console's lines to, when the agent runs from a stick ("" if
// not).
func stickLog(ui *console.UI, env restore.Env, st *restore.State, outcome string) (where string, save func()) {
	name := restore.StickLogName(st, outcome)
	if name == "" {
		return "", func() {}
	}
	return stick.LogDir + "/" + name + " on the stick", func() {
		if _, err := restore.SaveStickLog(env, st, name); err != nil {
			ui.Logf("warning: the log could not be written to the stick: %v", err)
		}
	}
}

// transcript keeps the console's lines for the stick's log, up to 8 MiB
// (the first lines: they say what was asked and what was found).
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const transcriptMax = 8 << 20

func (t *transcript) line(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buf.Len()+len(s)+1 > transcriptMax {
		return
	}
	t.buf.WriteString(s)
	t.buf.WriteByte('\n')
}

func (t *transcript) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf.Bytes()...)
}

// printRescue is the rescue entry's message: how to run the agent by hand.
func printRescue() {
	fmt.Print(`thaw rescue shell. To restore by hand:

  thaw agent --cmdline 'thaw.image=usb:NAME thaw.disk=DEV'
        restore the bundle NAME from the thaw stick onto the disk DEV
  thaw agent --cmdline 'thaw.image=usb:NAME thaw.dryrun=1'
        plan only: check NAME against this machine, write nothing
  thaw agent --cmdline 'thaw.image=http://HOST:PORT/NAME thaw.token=T ...'
        the same over the network
  thaw probe               this machine: CPU, memory map, PCI devices, disks

The stick's bundles are on its partition named THAWDATA; thaw.pubkey=
and thaw.kernel= are on the other entries' command lines (/proc/cmdline
shows this entry's only).
`)
}

// agentFailed shows the box remote hands read: why, the fix, and what
// state the disks are in; thaw.log= gets the box and the refusal as JSON
// ("thaw-refusal-json"). Exit status 3: refused; 1: failed.
func agentFailed(ui *console.UI, rlog *restore.RemoteLog, err error, wrote []string, logURL string, asJSON bool, stickLog func(outcome string) (string, func())) error {
	defer rlog.Flush()
	r, code := refusalOf(err, hintFor(err))
	short := console.Code(r.Refusals, code == 3)
	res := refusalResult{Title: r.Title, Code: short, Refusals: r.Refusals, PartlyWritten: wrote}
	rlog.Record("refusal", res)
	outcome := "failed"
	if code == 3 {
		outcome = "refused"
	}
	// The box names the stick's log file, which is written after it so
	// that it holds the box too.
	where, save := logURL, func() {}
	if stickLog != nil {
		if name, save1 := stickLog(outcome); name != "" {
			where, save = name, save1
		}
	}
	if asJSON {
		printJSON(res)
		save()
	} else {
		title := r.Title
		if code == 3 {
			title = "REFUSED: " + title
		}
		ui.Refused(title, r.Refusals, footerFor(wrote)+"\n"+console.Where(short, where))
		save()
		ui.Logf("To try again once fixed: thaw agent (the same thaw.* parameters,")
		ui.Logf("from /proc/cmdline); thaw agent --dry-run plans and writes nothing.")
		holdScreen(ui)
	}
	if code == 3 {
		return &exitError{3, errors.New("refused")}
	}
	return &exitError{1, err}
}

// holdScreen keeps the box on the screen until someone presses Enter,
// when the agent is the initramfs's uinit on a console, and then becomes
// the rescue shell.
func holdScreen(ui *console.UI) {
	if !isUinit() {
		return
	}
	ui.Logf("Press Enter for the rescue shell.")
	bufio.NewReader(os.Stdin).ReadString('\n')
	if err := rescueShell(); err != nil {
		ui.Logf("%v", err)
	}
}

// isUinit: the agent is the initramfs's uinit, on a console.
func isUinit() bool { return os.Getppid() == 1 && isTerminal(os.Stdin) }

// rescueShell replaces the agent, as the initramfs's uinit, with the
// rescue shell, in the same session on the same console. (Started by
// init after the agent exits, the shell dies at once: the console was
// hung up when the agent, its session's leader, exited.) Elsewhere it
// does nothing.
func rescueShell() error {
	if !isUinit() {
		return nil
	}
	for _, sh := range []string{"/bin/defaultsh", "/bin/sh"} {
		if _, err := os.Stat(sh); err == nil {
			return fmt.Errorf("rescue shell %s: %w", sh, unix.Exec(sh, []string{sh}, os.Environ()))
		}
	}
	return errors.New("no rescue shell in this initramfs (/bin/defaultsh, /bin/sh)")
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

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
