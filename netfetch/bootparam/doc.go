// Package bootparam reads the restore agent's instructions from the
// kernel command line: the thaw.* parameters that PXE, iPXE, GRUB or a
// USB stick's boot menu put on the agent kernel's command line.
//
// [FromProc] parses /proc/cmdline; [Parse] parses any string. The agent
// reads /proc/cmdline rather than its environment or arguments because
// the kernel hands neither to init for a parameter with a dot in its name
// (it takes "thaw.x" for a module parameter) — but /proc/cmdline keeps the
// command line as the boot loader wrote it, quotes included.
//
// # Parameters
//
// thaw.image=URL
//
//	The bundle to restore, an http:// or https:// URL: a file that
//	`thaw serve` serves, or any HTTP server or S3-compatible store that
//	honours Range requests. Required by the agent.
//	Example: thaw.image=http://192.0.2.10:8080/web1.thaw
//
//	Or a file, for a restore without any network: usb:NAME is the file
//	NAME at the top of the thaw stick's data partition (the partition
//	named THAWDATA, which the agent mounts read-only; a bundle over 4 GiB
//	is stored as NAME.000, NAME.001, … and read as one), and file:/PATH a
//	file in the agent's own tree. Either may carry a #sha256= pin. With a
//	local image the dhcp stage is skipped, unless thaw.log= or
//	thaw.kernel= is a URL.
//	Example: thaw.image=usb:web1.thaw
//
// thaw.pubkey=KEY
//
//	The minisign public key that the bundle's signature must verify
//	against: the key line of the .pub file that `thaw keygen` wrote (its
//	second line, 56 base64 characters starting "RW"), not the file name
//	and not the "untrusted comment" line. Optional: keys built into the
//	initramfs at /etc/thaw/pubkeys/*.pub (`make initramfs PUBKEY=FILE`)
//	are trusted too. Without any key the agent refuses the bundle unless
//	thaw.insecure=1 is given.
//	Example: thaw.pubkey=RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3
//
// thaw.disk=DEV[,DEV…]
//
//	The target disks, in the bundle's disk order (the order `thaw inspect`
//	lists them), separated by commas, and the operator's consent to
//	overwrite them: without thaw.disk the agent writes no disk. A disk is
//	named by its path under /dev, with or without the "/dev/" prefix:
//	"vda", "/dev/nvme0n1" and "/dev/disk/by-id/…" (where such links
//	exist) all work. [Params.Disks] holds the names with "/dev/" removed
//	("vda", "nvme0n1", "disk/by-id/…"); the agent opens "/dev/"+name.
//	A disk listed twice, an empty slot ("vda,,vdb") or a path outside
//	/dev is an error.
//	Example: thaw.disk=sda,nvme0n1
//
// thaw.area=DEV
//
//	The resume area for thaw.resume=kexec: a swap partition, not on one of
//	the thaw.disk targets, that receives the memory image in the kernel's
//	own format for the image kernel to resume from (resume=). Named like a
//	disk, with or without "/dev/"; [Params.Area] holds it without. It may
//	not be one of the thaw.disk names. Required with thaw.resume=kexec;
//	unused otherwise.
//	Example: thaw.area=/dev/sdb2
//
// thaw.token=TOKEN
//
//	The bearer token sent as "Authorization: Bearer TOKEN" with every
//	request to the image store and the log URL. Optional. The kernel
//	command line is readable by every process on the agent machine and
//	is sent in clear over http://; give the agent a token that may only
//	read bundles and post logs. The parsed value is never printed: errors
//	and [Params.String] hide it.
//
// thaw.identity=https://HOST:PORT/PATH | usb:NAME | file:/PATH
//
//	Where the agent gets an age identity (the secret half of a thaw keygen
//	--recipient pair) that decrypts the bundle, beside the identities built
//	into the agent: from the store over https (with thaw.token), from the
//	stick's data partition, or from a file. Plain http:// is refused: the
//	identity decrypts the server's RAM. Optional.
//	Example: thaw.identity=https://store.example:8443/keys/web1.identity
//
// thaw.log=URL
//
//	Where the agent POSTs its log lines (`thaw serve` collects them under
//	/log/NAME). Optional; without it the log only goes to the console.
//	Example: thaw.log=http://192.0.2.10:8080/log/web1
//
// thaw.resume=direct|kexec
//
//	How the restored memory image is resumed. "direct": the agent's own
//	kernel restores it through /dev/snapshot. "kexec": the agent kexecs the
//	image's own kernel with resume= pointing at thaw.area, where it
//	wrote the image.
//	Absent (or "auto"): the agent chooses from the plan. [Params.Resume]
//	is "" for auto.
//
// thaw.insecure=1
//
//	Lets the agent go on when there is nothing to verify the bundle with:
//	no public key at all, or a bundle that carries no signature. The
//	chunk checksums are still checked (they catch damage in transit), but
//	nothing proves who made the bundle. DANGER: with thaw.insecure=1,
//	whoever can answer the agent's DHCP request, or sits on the path to an
//	http:// image URL, can make the agent overwrite the thaw.disk disks
//	and start a kernel and memory image of their choice — they own the
//	restored server. Use it only on an isolated lab network. A signature
//	that is present and fails against a present key is refused even with
//	thaw.insecure=1. Accepted values, as for kernel booleans: a bare
//	"thaw.insecure", 1, y, yes, on, true; 0, n, no, off, false turn it
//	off.
//
// thaw.stage=2
//
//	Internal: the agent appends it when it kexecs itself into a second
//	stage (for instance with the source machine's e820 table), so that the
//	second stage continues the restore instead of starting over. Do not
//	set it by hand. Values 1 and 2 (absent means 1; [Params.Stage] is 0).
//
// thaw.iface=NAME
//
//	Run DHCP only on this link (as `ip link` names it in the agent, such
//	as eth0 or enp1s0). Absent: DHCP on every Ethernet link with carrier;
//	the first that gets a lease wins.
//
// thaw.retries=N
//
//	How many failed requests in a row a read of the bundle survives
//	before the agent gives up (0 to 1000; 0: none). Failures count in a
//	row until the read gains 64 KiB, so a store that sends a few bytes and
//	cuts uses them up. Absent: 5.
//
// thaw.minrate=RATE
//
//	The slowest the bundle may arrive, in bytes per second with an
//	optional k, m or g suffix (powers of 1024), averaged over the time
//	spent waiting on the store once that passes 30 s. A slower answer is
//	cut and retried. 0: no minimum. Absent: 16k.
//
// thaw.deadline=DURATION
//
//	Bounds the whole download, as a Go duration (90m, 24h). Absent: 24h.
//
// thaw.kernel=URL#sha256=DIGEST
//
//	Where a second stage (the agent booting itself again with the
//	source's memory map) gets the agent kernel when the initramfs carries
//	none (mkinitramfs -kernel-copy=false): an http(s) URL and the SHA-256
//	of the file, or file:/PATH#sha256=DIGEST. It is fetched and checked
//	right after the plan, before any write. thaw media pxe writes it for
//	the tree's own vmlinuz; thaw media usb for the stick's, which the
//	agent finds on the stick's ESP under /run/thaw/stick-esp.
//
// thaw.dryrun=1
//
//	Plan and write nothing, as thaw agent --dry-run: the "plan" entry of
//	a thaw stick's menu.
//
// thaw.follow=1
//
//	Follow a capture in progress (thaw capture --precopy into thaw
//	serve): the agent waits for the capture's pre-copy, NAME.precopy
//	(the disks as read while the server runs), plans and writes it, then
//	waits for the bundle NAME with the pre-copy's bundle id, and writes
//	only the chunks that changed before it resumes the image. The
//	downtime is then the frozen capture and what changed, not the disks'
//	size. thaw.image= is the bundle's http(s) URL, without #sha256=;
//	thaw.deadline= also bounds each wait (default 24h).
//
// thaw.rescue=1
//
//	The agent prints how to run it by hand and exits, so that the rescue
//	shell starts: the stick's "rescue shell" entry. It needs no other
//	parameter.
//
// # Syntax
//
// The command line is split as the kernel splits it (see [Split]):
// whitespace separates parameters, double quotes group, and the kernel's
// quote removal applies, so thaw.image="http://h/b" and
// "thaw.image=http://h/b" both give http://h/b. No value may contain
// whitespace, '"', control characters or non-ASCII bytes: in a URL write
// them percent-encoded. A bare "--" ends the kernel's parameters; what
// follows goes to init, and thaw.* parameters there are ignored (with a
// warning).
//
// A parameter given more than once: the last one counts, for every
// parameter including thaw.disk (the lists are not merged), so that a
// parameter appended at a boot prompt overrides the boot menu's. An empty
// value counts as absent: "thaw.disk=" at the end withdraws the consent
// an earlier thaw.disk gave. [Params.Warnings] notes each repetition.
//
// Names are case-sensitive. A parameter whose name starts with "thaw."
// in any case, or with "thaw_" or "thaw-", and is not one of the above is
// an error that names the closest known parameter: a typo must not be
// ignored on a machine whose disks are about to be overwritten.
//
// The x86 kernel keeps at most 2047 bytes of command line and cuts the
// rest silently; Parse warns when the command line reaches that length.
//
// # Errors
//
// [Parse] and [Params.Validate] report every problem at once, each an
// [*Error] naming the parameter, the value as written, what is wrong and
// what to write instead; they match [ErrUnknown], [ErrInvalid] or
// [ErrMissing] with errors.Is, and [Errors] lists them.
// [Params.Validate] with agent true also requires thaw.image, and
// thaw.area with thaw.resume=kexec.
//
// [Params.Args] writes the parameters back (the agent appends them for its
// second stage); parsing them gives the same Params.
package bootparam
