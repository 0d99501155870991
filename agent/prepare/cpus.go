package prepare

import (
	"fmt"
	"os"
	"path/filepath"
)

// GrubCPUs is the GRUB drop-in CPUs writes.
const GrubCPUs = "etc/default/grub.d/thaw-cpus.cfg"

// CPUs makes room for n CPUs from the next boot on: the kernel's possible
// CPUs are fixed at boot (the CPUs the firmware lists, present or not),
// and possible_cpus=n raises them, so that a server resumed on a machine
// with more CPUs can bring them up. It adds possible_cpus= to GRUB's
// command line (a drop-in under /etc/default/grub.d) and runs update-grub.
// Without GRUB it writes nothing and says what to add to the boot
// loader. It returns what was done.
func CPUs(h *Host, n int) (string, error) {
	if n < 1 || n > 8192 {
		return "", fmt.Errorf("--cpus %d: give the CPU count of the largest machine the server may move to", n)
	}
	arg := fmt.Sprintf("possible_cpus=%d", n)
	if _, err := os.Stat(h.path("usr/sbin/update-grub")); err != nil {
		return "", fmt.Errorf("no GRUB here (no /usr/sbin/update-grub): add %s to the kernel command line of the boot loader, and reboot", arg)
	}
	body := fmt.Sprintf("# thaw prepare --cpus %d: room for %d CPUs after a move (thaw prepare --undo removes it)\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX %s\"\n", n, n, arg)
	p := h.path(GrubCPUs)
	if old, err := os.ReadFile(p); err == nil && string(old) == body {
		return fmt.Sprintf("%s already in GRUB's command line (%s)", arg, "/"+GrubCPUs), nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		return "", err
	}
	if err := h.Run("update-grub"); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("update-grub: %w (the drop-in was removed again)", err)
	}
	return fmt.Sprintf("%s added to GRUB's command line (%s): the kernel makes room for %d CPUs from the next boot", arg, "/"+GrubCPUs, n), nil
}
