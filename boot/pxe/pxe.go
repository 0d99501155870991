package pxe

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Config is what the script boots.
type Config struct {
	KernelURL string   // the agent kernel (build/agent/vmlinuz), http(s)
	InitrdURL string   // the agent initramfs (build/agent/initramfs.cpio.gz)
	Args      []string // kernel arguments: console=…, thaw.image=…, …
}

// Script returns an iPXE script. Every URL and argument is checked for
// characters that would end an iPXE command or start a variable.
func Script(c Config) (string, error) {
	for _, u := range []string{c.KernelURL, c.InitrdURL} {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "tftp://") {
			return "", fmt.Errorf("pxe: %q is not an http(s) or tftp URL", u)
		}
	}
	for _, s := range append([]string{c.KernelURL, c.InitrdURL}, c.Args...) {
		if strings.ContainsAny(s, " \t\r\n") || strings.Contains(s, "${") {
			return "", fmt.Errorf("pxe: %q holds white space or ${: iPXE would split or expand it", s)
		}
		// iPXE ends a command at a token that starts a comment or is a
		// command separator (core/exec.c, command_terminator); a # inside
		// a token (URL#sha256=…) is kept.
		if strings.HasPrefix(s, "#") || s == "||" || s == "&&" || s == ";" {
			return "", fmt.Errorf("pxe: %q would end the iPXE command", s)
		}
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("echo thaw restore agent: network boot\n")
	b.WriteString(":retry\n")
	// Chained from a PXE ROM or the proxy, iPXE has its address already.
	b.WriteString("isset ${net0/ip} || dhcp || goto retry\n")
	// initrd=NAME: a kernel booted through its EFI stub (ipxe.efi) finds
	// the initramfs iPXE loaded by that name; BIOS kernels ignore it.
	args := append(slices.Clone(c.Args), "initrd="+path.Base(c.InitrdURL))
	fmt.Fprintf(&b, "kernel %s %s || goto failed\n", c.KernelURL, strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd %s || goto failed\n", c.InitrdURL)
	b.WriteString("boot\n")
	b.WriteString(":failed\n")
	b.WriteString("echo thaw: could not fetch the agent; retrying in 10 s\n")
	b.WriteString("sleep 10\n")
	b.WriteString("goto retry\n")
	return b.String(), nil
}
