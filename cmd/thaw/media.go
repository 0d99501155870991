package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thawlinux/thaw/boot/pxe"
	"github.com/thawlinux/thaw/images/bundle"
)

const mediaHelp = `
Write boot media for the restore agent.

thaw media pxe --out DIR --url URL --subnet NET [flags]
  writes a PXE tree into DIR:
    boot.ipxe            the iPXE script: a machine with machines/MAC.ipxe
                         boots that one, every other one the default below
    vmlinuz, initramfs.cpio.gz
                         the agent (from --agent, default build/agent)
    tftp/undionly.kpxe   iPXE for BIOS PXE ROMs   (Debian's ipxe package,
    tftp/ipxe.efi        iPXE for UEFI x86-64      or --ipxe DIR)
    dnsmasq.conf         proxy-DHCP: it sits beside the network's own DHCP
                         server, hands out no addresses, answers PXE clients
                         only: the loader by client architecture (option 93)
                         over TFTP, then the script over HTTP to iPXE
  Serve it with the bundles from one process, and start dnsmasq:
    thaw serve --dir STORE --boot DIR --read-token-file TOKEN --listen ADDR
    dnsmasq --no-daemon --conf-file=DIR/dnsmasq.conf
  --url is where thaw serve answers for the tree: http://ADDR/boot/.
  With --mac, only DIR/machines/MAC.ipxe is written: that machine boots
  with these parameters (which bundle, which disks), the others with the
  default script.

The agent's parameters come from --image, --disk, --token-file, --log,
--pubkey and --arg; the agent refuses, with its reason on the console,
whatever they leave out. The script also names the tree's kernel with its
SHA-256 (thaw.kernel=), which a second stage boots. Nothing is written
until every input was checked.
`

func runMedia(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Print("Usage: thaw media pxe --out DIR --url URL --subnet NET [flags]\n" + mediaHelp)
		if len(args) == 0 {
			return &exitError{2, errors.New("name the medium: thaw media pxe")}
		}
		return nil
	}
	switch args[0] {
	case "pxe":
		return runMediaPXE(args[1:])
	}
	return &exitError{2, fmt.Errorf("thaw media %s: unknown medium (pxe)", args[0])}
}

func runMediaPXE(args []string) error {
	fs := newFlags("media pxe", "--out DIR --url URL --subnet NET [--image URL] [--disk DEV …] [--token-file FILE] [--log URL] [--pubkey FILE] [--mac MAC] [--arg K=V …]", mediaHelp)
	out := fs.String("out", "", "the directory to write the tree into (required)")
	baseURL := fs.String("url", "", "where thaw serve --boot serves the tree, e.g. http://10.0.0.5:8080/boot/ (required)")
	subnet := fs.String("subnet", "", "the network dnsmasq answers PXE on, e.g. 10.0.0.0 (required, except with --mac)")
	iface := fs.String("interface", "", "dnsmasq's interface (default: all)")
	serverIP := fs.String("server-ip", "", "the boot server's IPv4 address, handed out as next-server (default: --url's host, if an address)")
	agentDir := fs.String("agent", "build/agent", "directory holding the agent's vmlinuz and initramfs.cpio.gz (make initramfs)")
	ipxeDir := fs.String("ipxe", "/usr/lib/ipxe", "directory holding undionly.kpxe and ipxe.efi (Debian's ipxe package)")
	image := fs.String("image", "", "the bundle's URL: thaw.image= (add #sha256=DIGEST from thaw inspect to pin it)")
	tokenFile := fs.String("token-file", "", "file holding the store's read token: thaw.token=")
	logURL := fs.String("log", "", "where the agent posts its log: thaw.log=")
	pubPath := fs.String("pubkey", "", "a minisign public key for thaw.pubkey= (the agent takes it only if its initramfs was built with -allow-cmdline-key)")
	mac := fs.String("mac", "", "write only the script of the machine with this MAC address")
	console := fs.String("console", "ttyS0", "the agent's console= (ttyS0, tty0, …)")
	var disks, extra []string
	fs.Func("disk", "a target disk for thaw.disk= (consent to overwrite it); repeatable", func(v string) error {
		disks = append(disks, v)
		return nil
	})
	fs.Func("arg", "another agent parameter, e.g. thaw.resume=kexec; repeatable", func(v string) error {
		extra = append(extra, v)
		return nil
	})
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	usageErr := func(format string, a ...any) error {
		fs.Usage()
		return &exitError{2, fmt.Errorf(format, a...)}
	}
	switch {
	case len(pos) != 0:
		return usageErr("unexpected arguments %q", pos)
	case *out == "" || *baseURL == "":
		return usageErr("--out and --url are required")
	case *subnet == "" && *mac == "":
		return usageErr("--subnet is required: the network dnsmasq answers PXE on")
	}
	params := []string{"console=" + *console}
	if *image != "" {
		params = append(params, "thaw.image="+*image)
	}
	if *pubPath != "" {
		k, err := bundle.LoadPublicKey(*pubPath)
		if err != nil {
			return err
		}
		params = append(params, "thaw.pubkey="+k.String())
	}
	if len(disks) > 0 {
		params = append(params, "thaw.disk="+strings.Join(disks, ","))
	}
	if *tokenFile != "" {
		tok, err := readServeToken("--token-file", *tokenFile)
		if err != nil {
			return err
		}
		params = append(params, "thaw.token="+tok)
	}
	if *logURL != "" {
		params = append(params, "thaw.log="+*logURL)
	}
	params = append(params, extra...)
	t := pxe.Tree{URL: *baseURL, Subnet: *subnet, Interface: *iface, Server: *serverIP, AgentDir: *agentDir, IPXEDir: *ipxeDir, Args: params, MAC: *mac}
	wrote, err := pxe.Write(*out, t)
	for _, w := range wrote {
		fmt.Printf("  wrote %s\n", filepath.Join(*out, w))
	}
	if err != nil {
		return err
	}
	if *mac == "" {
		abs, _ := filepath.Abs(*out)
		fmt.Printf("PXE tree ready in %s. Next:\n", abs)
		fmt.Printf("  thaw serve --dir STORE --boot %s --listen HOST:PORT --read-token-file TOKEN   (serving %s)\n", abs, *baseURL)
		fmt.Printf("  dnsmasq --no-daemon --conf-file=%s\n", filepath.Join(abs, pxe.DnsmasqConf))
	}
	if *image == "" || len(disks) == 0 {
		fmt.Fprintln(os.Stderr, "note: without --image and --disk the agent only plans: it stops at the first missing parameter and says which")
	}
	return nil
}
