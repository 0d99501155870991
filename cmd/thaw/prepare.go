package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/thawlinux/thaw/agent/console"
	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/agent/prepare"
	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/manifest"
)

const prepareHelp = `
Run as root on the server itself. Makes it movable to another disk
controller from its next boot on, when its root, swap or other filesystems
sit on plain partitions.

A resumed kernel keeps the dead disk controller and hangs on any I/O to a
partition of it; only a device-mapper device can be re-pointed at the disk
in its new place. LVM roots move as they are. For every partition that
carries a mounted filesystem or an active swap, thaw prepare installs:

  /etc/thaw/prepare.conf                      the partitions, by PARTUUID
  /usr/local/lib/thaw/thaw                    this binary, for the initramfs
  /etc/initramfs-tools/hooks/thaw             puts both, and dm_mod, into it
  /etc/initramfs-tools/scripts/local-top/thaw wraps each partition in a
                                              dm-linear device (thaw-root,
                                              thaw-swap0, thaw-boot …) and
                                              mounts the root from it
  /etc/udev/rules.d/61-thaw-prepare.rules     gives the thaw-* devices the
                                              /dev/disk/by-uuid links, so
                                              fstab's UUID= entries use them

and rebuilds the initramfs (update-initramfs -u -k all). The boot loader
and the kernel command line are not touched. Nothing is written unless
every check passes: fstab must name the wrapped filesystems and swap by
UUID= or LABEL=, and the initramfs must be built by initramfs-tools.
Running it again changes nothing.

  --check  says whether the running system is movable now; exit 0 when it
           is, 1 when it is not (naming what is not)
  --undo   removes the files and rebuilds the initramfs; the thaw-* devices
           go away at the next boot
  --cpus N also makes room for N CPUs from the next boot: a kernel's
           possible CPUs are fixed when it boots, so a server resumed on a
           machine with more CPUs runs on no more than it could have had.
           Adds possible_cpus=N to GRUB's command line
           (/etc/default/grub.d/thaw-cpus.cfg, update-grub). On Linux 6.1
           that leaves room for CPUs hot-added later (ACPI); from 6.9 on
           only CPUs the firmware listed as present but disabled can come
           (QEMU -smp N,maxcpus=M does that), and possible_cpus= does not
           help.
`

func runPrepare(args []string) error {
	fs := newFlags("prepare", "[--check|--undo] [--cpus N] [--json]", prepareHelp)
	cpus := fs.Int("cpus", 0, "also make room for N CPUs from the next boot (possible_cpus=N on GRUB's command line)")
	check := fs.Bool("check", false, "say whether the running system is movable; exit 1 when it is not")
	undo := fs.Bool("undo", false, "remove what thaw prepare installed and rebuild the initramfs")
	asJSON := fs.Bool("json", false, "with --check: print the status as JSON")
	initramfs := fs.Bool("initramfs", false, "run by the initramfs script: wrap each thaw-NAME=/dev/PART given")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *initramfs {
		return prepareInitramfs(pos)
	}
	if len(pos) != 0 || (*check && *undo) {
		fs.Usage()
		return &exitError{2, fmt.Errorf("prepare takes no arguments and one of --check or --undo, got %q", args)}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	h := &prepare.Host{Root: "/", Executable: self,
		Probe: func() (*manifest.Manifest, error) { return probe.Probe("/") },
		Run: func(name string, args ...string) error {
			cmd := exec.Command(name, args...)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			return cmd.Run()
		},
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "thaw prepare: "+f+"\n", a...) }}
	switch {
	case *check:
		st, err := prepare.Check(h)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			enc.Encode(st)
		} else {
			printPrepareStatus(st)
		}
		if !st.Movable {
			return &exitError{1, errors.New("")}
		}
		return nil
	case *undo:
		removed, err := prepare.Undo(h)
		if err != nil {
			return prepareErr(err)
		}
		if len(removed) > 0 {
			fmt.Println("undone: the initramfs no longer wraps partitions; the thaw-* devices go away at the next boot")
		}
		return nil
	}
	es, changed, err := prepare.Install(h)
	if err != nil {
		return prepareErr(err)
	}
	if *cpus != 0 {
		msg, err := prepare.CPUs(h, *cpus)
		if err != nil {
			return err
		}
		fmt.Println(msg)
	}
	if len(es) == 0 {
		fmt.Println("movable already: no mounted filesystem or active swap sits on a plain partition")
		return nil
	}
	for _, e := range es {
		fmt.Printf("  %-12s /dev/%-8s %-6s PARTUUID=%s\n", e.Name, e.Dev, e.Use, e.PartUUID)
	}
	if changed {
		fmt.Println("prepared: these partitions reach their disks through device-mapper from the next boot on; reboot, then check with thaw prepare --check")
	} else {
		fmt.Println("prepared already: nothing changed")
	}
	return nil
}

// prepareErr renders a refusal as the console box, with nothing written.
func prepareErr(err error) error {
	var r *plan.Refused
	if !errors.As(err, &r) {
		return err
	}
	fmt.Fprint(os.Stderr, console.Box("REFUSED", r.Refusals, console.NothingWritten))
	return &exitError{1, errors.New("")}
}

func printPrepareStatus(st *prepare.Status) {
	if st.Movable {
		fmt.Print("movable: yes: every mounted filesystem and active swap reaches its disk through device-mapper")
		if len(st.Wrapped) > 0 {
			fmt.Printf(" (thaw prepare: %s)", strings.Join(st.Wrapped, ", "))
		}
		fmt.Println()
		return
	}
	fmt.Println("movable: no: a resumed kernel could not follow these to another disk controller:")
	for _, w := range st.Why {
		fmt.Println("  " + w)
	}
	if st.Installed {
		fmt.Println("thaw prepare is installed: it takes effect at the next boot (reboot, then check again)")
	} else {
		fmt.Println("fix: run thaw prepare, reboot, then check again")
	}
}

// prepareInitramfs is the initramfs side: it creates the thaw-* devices.
func prepareInitramfs(args []string) error {
	c, err := dm.Open()
	if err != nil {
		return err
	}
	defer c.Close()
	b := &prepare.Initramfs{Sys: "/sys", Dev: "/dev", DM: c,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "thaw: "+f+"\n", a...) }}
	return b.Wrap(args)
}
