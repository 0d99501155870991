package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/console"
	"github.com/thawlinux/thaw/agent/restore"
	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/boot/initramfs"
	"github.com/thawlinux/thaw/boot/pxe"
	"github.com/thawlinux/thaw/boot/usb"
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

thaw media usb --out FILE|DEV [--bundle [NAME=]FILE …] [flags]
  writes a recovery stick (a GPT disk image, or the device itself): an
  EFI system partition THAW-ESP that boots the agent with systemd-boot
  (UEFI) and syslinux (BIOS), and a FAT32 data partition THAWDATA that
  holds the bundles and fills the rest of the stick. Its boot menu has,
  for each bundle, "plan NAME" (writes nothing: the default after
  --timeout seconds) and "restore NAME" (thaw.disk= from --disk), and a
  rescue shell. --default NAME makes "restore NAME" the default, for an
  unattended restore. The agent restores from the stick without any
  network, and writes its log to thaw-logs/ on the stick (the only
  place it writes there); it never writes the stick's disk otherwise,
  and refuses thaw.disk= naming it.
  A bundle over 4 GiB is stored as NAME.000, NAME.001, … (FAT32 holds
  files up to 4 GiB); the agent reads them as one. --pack FILE carries a
  driver pack (thaw driverpack build) under packs/, and the entries boot
  with thaw.packs=usb:packs.

The agent's parameters come from --image, --disk, --token-file, --log,
--pubkey and --arg; the agent refuses, with its reason on the console,
whatever they leave out. The script also names the tree's kernel with its
SHA-256 (thaw.kernel=), which a second stage boots. Nothing is written
until every input was checked.
`

func runMedia(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Print("Usage: thaw media pxe --out DIR --url URL --subnet NET [flags]\n       thaw media usb --out FILE|DEV [--bundle [NAME=]FILE …] [flags]\n" + mediaHelp)
		if len(args) == 0 {
			return &exitError{2, errors.New("name the medium: thaw media pxe, or thaw media usb")}
		}
		return nil
	}
	switch args[0] {
	case "pxe":
		return runMediaPXE(args[1:])
	case "usb":
		return runMediaUSB(args[1:])
	}
	return &exitError{2, fmt.Errorf("thaw media %s: unknown medium (pxe or usb)", args[0])}
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
	disksFlag := listFlag(fs, "disk", "a target disk for thaw.disk= (consent to overwrite it); repeatable")
	extraFlag := listFlag(fs, "arg", "another agent parameter, e.g. thaw.resume=kexec; repeatable")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	disks, extra := *disksFlag, *extraFlag
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

func runMediaUSB(args []string) error {
	fs := newFlags("media usb", "--out FILE|DEV [--bundle [NAME=]FILE …] [--pack FILE …] [--pubkey FILE] [--disk DEV …] [--default NAME] [--size N] [--identity FILE …]", mediaHelp)
	out := fs.String("out", "", "the stick image to create (a new file), or the stick's block device, e.g. /dev/sdX (required)")
	agentDir := fs.String("agent", "build/agent", "directory holding the agent's vmlinuz and initramfs.cpio.gz (make initramfs)")
	pubPath := fs.String("pubkey", "", "a minisign public key for thaw.pubkey= (the agent takes it only if its initramfs was built with -allow-cmdline-key)")
	def := fs.String("default", "", "make \"restore NAME\" the menu's default, for an unattended restore (default: \"plan\" of the first bundle, which writes nothing)")
	sizeArg := fs.String("size", "", "the image's size, e.g. 8G (default: what the files need; a device: all of it); the data partition fills it")
	timeout := fs.Int("timeout", 5, "seconds the boot menu waits before its default entry")
	sdboot := fs.String("systemd-boot", usb.SystemdBoot, "systemd-boot's EFI binary (Debian's systemd-boot-efi); \"\" leaves UEFI boot out")
	syslinux := fs.String("syslinux", usb.SyslinuxBin, "the syslinux installer (Debian's syslinux and mtools), for BIOS boot; \"\" leaves BIOS boot out")
	gptmbr := fs.String("gptmbr", usb.SyslinuxGPTMBR, "syslinux's gptmbr.bin (Debian's syslinux-common)")
	packsFlag := listFlag(fs, "pack", "a driver pack (RELEASE.pack from thaw driverpack build) to carry under packs/; the menu entries then boot with thaw.packs=usb:packs; repeatable")
	bundlesFlag := listFlag(fs, "bundle", "a bundle to carry, as FILE or NAME=FILE (NAME: its file name on the stick, for thaw.image=usb:NAME); repeatable")
	disksFlag := listFlag(fs, "disk", "a target disk for the restore entries' thaw.disk= (consent to overwrite it); repeatable")
	extraFlag := listFlag(fs, "arg", "another agent parameter for every entry, e.g. thaw.resume=kexec; repeatable")
	consolesFlag := listFlag(fs, "console", "a console= for the agent, repeatable; the last one is the interactive console (default: ttyS0,115200 then tty0)")
	identitiesFlag := listFlag(fs, "identity", "an age identity that decrypts the bundles, added to the stick's initramfs (the stick then holds a secret key); repeatable")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	bundles, disks, extra, consoles, identities := *bundlesFlag, *disksFlag, *extraFlag, *consolesFlag, *identitiesFlag
	usageErr := func(format string, a ...any) error {
		fs.Usage()
		return &exitError{2, fmt.Errorf(format, a...)}
	}
	switch {
	case len(pos) != 0:
		return usageErr("unexpected arguments %q", pos)
	case *out == "":
		return usageErr("--out is required: a new image file, or the stick's device")
	}
	cfg := usb.Config{Kernel: filepath.Join(*agentDir, "vmlinuz"), Initrd: filepath.Join(*agentDir, "initramfs.cpio.gz"),
		SystemdBoot: *sdboot, Timeout: *timeout}
	if *syslinux != "" {
		cfg.Syslinux, cfg.GPTMBR = *syslinux, *gptmbr
	}
	if *sizeArg != "" {
		if cfg.Size, err = parseSize(*sizeArg); err != nil {
			return usageErr("--size: %v", err)
		}
	}
	if len(consoles) == 0 {
		consoles = []string{"ttyS0,115200", "tty0"}
	}
	common := consoles2args(consoles)
	if *pubPath != "" {
		k, err := bundle.LoadPublicKey(*pubPath)
		if err != nil {
			return err
		}
		common = append(common, "thaw.pubkey="+k.String())
	}
	digest, err := usb.FileSHA256(cfg.Kernel)
	if err != nil {
		return fmt.Errorf("the agent kernel: %w (make initramfs builds it)", err)
	}
	common = append(common, "thaw.kernel=file:"+restore.StickESPDir+"/"+stick.KernelPath+"#sha256="+digest)
	common = append(common, extra...)
	if len(*packsFlag) > 0 {
		cfg.Packs = *packsFlag
		common = append(common, "thaw.packs=usb:"+usb.PacksDir)
	}
	diskArg := ""
	if len(disks) > 0 {
		diskArg = " thaw.disk=" + strings.Join(disks, ",")
	}
	for _, b := range bundles {
		name, path, ok := strings.Cut(b, "=")
		if !ok {
			name, path = filepath.Base(b), b
		}
		chunks, err := storeChunks(path)
		if err != nil {
			return err
		}
		cfg.Bundles = append(cfg.Bundles, usb.Bundle{Name: name, Path: path, Chunks: chunks})
		stem := strings.TrimSuffix(name, ".thaw")
		args := strings.Join(common, " ") + " thaw.image=usb:" + name + diskArg
		onto := "the disk it chooses (a blank one)"
		if len(disks) > 0 {
			onto = strings.Join(disks, ",")
		}
		cfg.Entries = append(cfg.Entries,
			usb.Entry{ID: "plan-" + stem, Title: "thaw: plan " + stem + " (writes nothing)", Args: args + " thaw.dryrun=1"},
			usb.Entry{ID: "restore-" + stem, Title: "thaw: restore " + stem + " onto " + onto, Args: args})
		if *def == name || *def == stem {
			cfg.Default = "restore-" + stem
		}
	}
	cfg.Entries = append(cfg.Entries, usb.Entry{ID: "rescue", Title: "thaw: rescue shell", Args: strings.Join(consoles2args(consoles), " ") + " thaw.rescue=1"})
	if *def != "" && cfg.Default == "" {
		return usageErr("--default %s: no --bundle of that name", *def)
	}
	if len(identities) > 0 {
		extraCpio := initramfs.New()
		for i, id := range identities {
			if _, err := bundle.LoadIdentities(id); err != nil {
				return fmt.Errorf("--identity %s: %w", id, err)
			}
			b, err := os.ReadFile(id)
			if err != nil {
				return err
			}
			extraCpio.File(fmt.Sprintf("etc/thaw/identities/stick-%d.identity", i), b, 0o600)
		}
		cfg.InitrdAppend = extraCpio.Raw()
	}
	cfg.Readme = stickReadme(cfg)
	fmt.Printf("writing %s …\n", *out)
	last := time.Now()
	l, err := usb.Write(*out, cfg, func(done, total int64) {
		if time.Since(last) >= 2*time.Second || done == total {
			last = time.Now()
			fmt.Printf("  %s\n", console.Bar("copy", done, total, 0))
		}
	})
	if err != nil {
		return err
	}
	fmt.Printf("stick written: %s, %d MiB (ESP %d MiB at %d MiB, %s %d MiB at %d MiB)\n", *out, l.Size>>20, l.ESPSize>>20, l.ESPStart>>20, stick.DataLabel, l.DataSize>>20, l.DataStart>>20)
	for _, e := range cfg.Entries {
		mark := " "
		if e.ID == cfg.Default || (cfg.Default == "" && e.ID == cfg.Entries[0].ID) {
			mark = "*"
		}
		fmt.Printf("  %s %-20s %s\n", mark, e.ID, e.Title)
	}
	if len(identities) > 0 {
		fmt.Fprintln(os.Stderr, "note: the stick's initramfs holds the identities given: whoever has the stick can decrypt its bundles; keep it like the key itself")
	}
	return nil
}

// listFlag is a repeatable string flag: each use appends its value.
func listFlag(fs *flag.FlagSet, name, usage string) *[]string {
	var l []string
	fs.Func(name, usage, func(v string) error {
		l = append(l, v)
		return nil
	})
	return &l
}

// consoles2args is a console= argument for each console, in order.
func consoles2args(cs []string) []string {
	var out []string
	for _, c := range cs {
		out = append(out, "console="+c)
	}
	return out
}

// stickReadme is README.txt on the data partition, for whoever finds the
// stick.
func stickReadme(cfg usb.Config) string {
	var b strings.Builder
	b.WriteString("thaw recovery stick\r\n===================\r\n\r\n")
	b.WriteString("Boot a machine from this stick (UEFI or BIOS) to restore a captured\r\nserver onto it, without any network. The boot menu:\r\n\r\n")
	for _, e := range cfg.Entries {
		fmt.Fprintf(&b, "  %-20s %s\r\n", e.ID, e.Title)
	}
	b.WriteString("\r\nThis partition (" + stick.DataLabel + ") holds the bundles. The agent mounts it\r\n")
	b.WriteString("read-only and writes only its logs, into " + stick.LogDir + "/: bring them back.\r\n")
	b.WriteString("To restore another bundle, copy NAME.thaw here, boot the rescue shell\r\nand run: thaw agent --cmdline 'thaw.image=usb:NAME.thaw thaw.disk=DISK'\r\n")
	return b.String()
}

// storeChunks lists the chunks a bundle from a store names (nil for a
// bundle that holds its chunks): the stick carries them beside it.
func storeChunks(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sums, err := bundle.StoreObjectChunks(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("--bundle %s: %w", path, err)
	}
	return sums, nil
}
