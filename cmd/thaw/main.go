// Command thaw moves a hibernated Linux server to other hardware. See
// `thaw help`.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{
	"inspect":    {"show what a hibernation image holds and whether a kernel would resume it", runInspect},
	"rewrite":    {"copy a hibernation image into another swap area, in any compression", runRewrite},
	"plan":       {"decide whether a bundle can be restored on this machine (writes nothing)", runPlan},
	"probe":      {"print this machine's profile: kernel, memory map, CPU, PCI, NICs, disks, mounts, swap", runProbe},
	"serve":      {"serve bundles over HTTP(S): GET with Range, PUT with a bearer token, agent logs", runServe},
	"keygen":     {"make a signing key pair in minisign format", runKeygen},
	"capture":    {"hibernate this machine into a signed bundle (file or thaw serve) and power off", runCapture},
	"export":     {"turn a kernel-written hibernation image and its disks into a signed bundle", runExport},
	"agent":      {"the restore agent (initramfs uinit): netboot, verify, plan, write, resume", runAgent},
	"restore":    {"verify a bundle, write its disks and its resume image, print resume arguments", runRestore},
	"media":      {"write boot media for the agent: a PXE tree with dnsmasq proxy-DHCP, or a USB stick", runMedia},
	"grant":      {"get a one-use token from thaw serve that uploads one bundle once (for a capture's --token-file)", runGrant},
	"driverpack": {"build kernel modules the image kernel lacks for its exact release, as a signed driver pack", runDriverpack},
	"presign":    {"let a restore agent read one bundle of an S3 bucket: a list of presigned URLs, and its thaw.image=", runPresign},
	"gc":         {"remove the chunks of a store that no bundle names (never those a capture in progress relies on)", runGC},
	"prepare":    {"make this server movable to another disk controller from its next boot (root and swap behind device-mapper)", runPrepare},
}

const usageHead = `thaw brings a hibernated Linux server back to life on other hardware.

Usage: thaw COMMAND [flags] [arguments]

Commands:
`

const usageTail = `
Places (DEV, FILE, REF) are block devices or files; PATH#N names partition N
of the GPT on a disk or disk image (thaw inspect disk.img#2).

Run 'thaw COMMAND --help' for a command's flags and output.
`

func usage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, usageTail)
}

// exitError carries a process exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	switch name {
	case "help", "-h", "--help", "-help":
		usage(os.Stdout)
		return
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "thaw: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	err := cmd.run(os.Args[2:])
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(os.Stderr, "thaw %s: %s\n", name, strings.TrimPrefix(msg, "thaw: "))
	}
	os.Exit(code)
}

// newFlags makes a FlagSet whose --help prints the command's own text.
func newFlags(name, synopsis, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: thaw %s %s\n\n%s\nFlags:\n", name, synopsis, strings.TrimSpace(text)+"\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags that may come after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// isTerminal reports whether f is a terminal (for progress lines).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
