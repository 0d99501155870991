package bootparam

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The parameter names, in the order [Params.Args] writes them.
const (
	keyImage    = "thaw.image"
	keyPubKey   = "thaw.pubkey"
	keyDisk     = "thaw.disk"
	keyArea     = "thaw.area"
	keyToken    = "thaw.token"
	keyIdentity = "thaw.identity"
	keyPacks    = "thaw.packs"
	keyLog      = "thaw.log"
	keyResume   = "thaw.resume"
	keyInsecure = "thaw.insecure"
	keyStage    = "thaw.stage"
	keyIface    = "thaw.iface"
	keyRetries  = "thaw.retries"
	keyMinRate  = "thaw.minrate"
	keyDeadline = "thaw.deadline"
	keyVerify   = "thaw.verify"
	keyKernel   = "thaw.kernel"
	keyDryRun   = "thaw.dryrun"
	keyRescue   = "thaw.rescue"
	keyFollow   = "thaw.follow"
)

var keys = []string{keyImage, keyPubKey, keyDisk, keyArea, keyToken, keyLog, keyResume, keyInsecure, keyStage, keyIface, keyRetries, keyMinRate, keyDeadline, keyVerify, keyKernel, keyDryRun, keyRescue, keyIdentity, keyPacks, keyFollow}

// Resume modes for thaw.resume.
const (
	ResumeAuto   = ""       // the agent chooses
	ResumeDirect = "direct" // through /dev/snapshot, by the agent's kernel
	ResumeKexec  = "kexec"  // kexec the image's own kernel with resume=
)

// Verify modes for thaw.verify.
const (
	VerifyFirst  = "first"  // every chunk before the first write
	VerifyStream = "stream" // each chunk as it is written, in one pass
)

// MaxCmdline is the x86 kernel's COMMAND_LINE_SIZE less its NUL: a longer
// command line is cut to this length before the kernel parses it.
const MaxCmdline = 2047

// ProcCmdline is where [FromProc] reads the command line.
const ProcCmdline = "/proc/cmdline"

// Params are the agent's instructions from the kernel command line. The
// zero value of a field means the parameter was absent (or given with an
// empty value, which counts as absent).
type Params struct {
	// Image is the bundle's http:// or https:// URL (thaw.image).
	Image string `json:"image,omitempty"`
	// PubKey is the base64 key line of a minisign public key, "RW…"
	// (thaw.pubkey).
	PubKey string `json:"pubkey,omitempty"`
	// Disks are the target disks in the bundle's disk order, as paths
	// relative to /dev: "vda", "nvme0n1", "disk/by-id/…" (thaw.disk;
	// a leading /dev/ is removed). The agent opens "/dev/" + name.
	Disks []string `json:"disks,omitempty"`
	// Area is the resume area for thaw.resume=kexec: a swap partition,
	// not on one of Disks, that receives the image in the kernel's format
	// (thaw.area; a path relative to /dev like Disks).
	Area string `json:"area,omitempty"`
	// Token is the bearer token for the image store (thaw.token).
	Token string `json:"-"`
	// Log is the URL the agent POSTs its log lines to (thaw.log).
	Log string `json:"log,omitempty"`
	// Resume is ResumeAuto, ResumeDirect or ResumeKexec (thaw.resume).
	Resume string `json:"resume,omitempty"`
	// Insecure lets the agent go on without a signature to check
	// (thaw.insecure).
	Insecure bool `json:"insecure,omitempty"`
	// Stage is 0 (or 1) for the agent's first boot, 2 when the agent
	// kexec'd itself (thaw.stage).
	Stage int `json:"stage,omitempty"`
	// Iface restricts DHCP to this link (thaw.iface).
	Iface string `json:"iface,omitempty"`
	// Retries is how many failed requests in a row a read of the bundle
	// survives (thaw.retries); 0: the default. -1 (thaw.retries=0): none.
	Retries int `json:"retries,omitempty"`
	// MinRate is the slowest the bundle may arrive, bytes per second
	// (thaw.minrate, with k/m suffixes); 0: the default, -1
	// (thaw.minrate=0): no minimum.
	MinRate int64 `json:"minrate,omitempty"`
	// Deadline bounds the whole download (thaw.deadline, a Go duration:
	// 90m, 24h); 0: the default.
	Deadline time.Duration `json:"deadline,omitempty"`
	// Verify is when chunks are checked against the signed index
	// (thaw.verify): VerifyFirst, VerifyStream, or "" to let the agent
	// choose (first when a target disk holds data).
	Verify string `json:"verify,omitempty"`
	// Kernel is where a second stage gets the agent kernel when the
	// initramfs carries none: an http(s) URL with #sha256= and the hex
	// SHA-256 of the file (thaw.kernel; thaw media pxe writes it).
	Kernel string `json:"kernel,omitempty"`
	// DryRun: plan and write nothing (thaw.dryrun; a stick's "plan"
	// entry).
	DryRun bool `json:"dryrun,omitempty"`
	// Rescue: the agent prints how to run it by hand and exits, and the
	// rescue shell starts (thaw.rescue; a stick's "rescue" entry).
	Rescue bool `json:"rescue,omitempty"`
	// Follow: the agent writes the pre-copy of a capture in progress
	// (NAME.precopy, which capture --precopy stores while the server
	// runs), waits for the capture's bundle NAME, then writes only the
	// chunks that changed and resumes (thaw.follow).
	Follow bool `json:"follow,omitempty"`
	// Identity is where the agent gets the age identity that decrypts
	// the bundle, beside those built into it (thaw.identity): an https://
	// URL of the store (with thaw.token), usb:NAME on the stick or
	// file:/PATH. Never plain http: the identity is a secret.
	Identity string `json:"identity,omitempty"`
	// Packs is where driver packs are (thaw.packs=): a directory URL
	// (http(s)://, usb:DIR, file:/DIR) holding RELEASE.pack files. The
	// agent fetches the image kernel's pack from there when the kernel
	// lacks a driver for a device here.
	Packs string `json:"packs,omitempty"`

	// Warnings are things worth telling the operator that did not stop
	// the parse: a parameter given twice, thaw.* arguments after "--",
	// a command line at the kernel's length limit.
	Warnings []string `json:"warnings,omitempty"`
}

// FromProc parses /proc/cmdline.
func FromProc() (*Params, error) {
	b, err := os.ReadFile(ProcCmdline)
	if err != nil {
		return nil, fmt.Errorf("read the kernel command line: %w", err)
	}
	return Parse(string(b))
}

// Parse reads the thaw.* parameters of a kernel command line and checks
// their values (as [Params.Validate] with agent false does). Parameters
// not named thaw.* are ignored, and so is everything after a bare "--".
// A name that starts with "thaw." (in any case), "thaw_" or "thaw-" but is
// not one of the parameters is an error, so that a typo does not pass
// silently.
//
// When a parameter appears more than once, the last one counts (and
// Warnings says so); only that one is checked.
//
// Parse reports every problem at once: the error joins one [*Error] per
// bad parameter (see [Errors]). Even then it returns the Params with every
// parameter that was valid, so that an agent can still reach thaw.log to
// report what is wrong.
func Parse(cmdline string) (*Params, error) {
	p := &Params{}
	var errs []error

	// The kernel stops at the first NUL; so does Split. Count what it sees.
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		cmdline = cmdline[:i]
	}
	if n := len(strings.TrimRight(cmdline, "\n")); n >= MaxCmdline {
		p.Warnings = append(p.Warnings, fmt.Sprintf("the kernel command line is %d bytes, at or over the x86 kernel's limit of %d: parameters at its end may have been cut off", n, MaxCmdline))
	}

	args, rest := Split(cmdline)
	last := map[string]Arg{}
	count := map[string]int{}
	var order []string
	for _, a := range args {
		if !isThawName(a.Name) {
			continue
		}
		if !isKey(a.Name) {
			errs = append(errs, unknown(a))
			continue
		}
		if count[a.Name] == 0 {
			order = append(order, a.Name)
		}
		count[a.Name]++
		last[a.Name] = a
	}
	for _, k := range order {
		a := last[k]
		if n := count[k]; n > 1 {
			shown := a.String()
			if k == keyToken {
				shown = k + "=…"
			}
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s is given %d times: the last one (%s) counts", k, n, shown))
		}
		if err := p.set(a); err != nil {
			errs = append(errs, err)
		}
	}

	if e := p.checkAreaDisks(); e != nil {
		p.Area = ""
		errs = append(errs, e)
	}

	if rest != "" {
		after, _ := Split(rest)
		for _, a := range after {
			if isThawName(a.Name) {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s comes after \"--\": the kernel hands it to init as an argument and the agent ignores it (move it before \"--\")", a.Name))
			}
		}
	}
	return p, errors.Join(errs...)
}

func isThawName(name string) bool {
	if len(name) < 5 {
		return false
	}
	prefix := strings.ToLower(name[:4])
	return prefix == "thaw" && (name[4] == '.' || name[4] == '_' || name[4] == '-')
}

func isKey(name string) bool {
	for _, k := range keys {
		if name == k {
			return true
		}
	}
	return false
}

func unknown(a Arg) *Error {
	e := &Error{Param: a.Name, Kind: ErrUnknown, Reason: "the agent knows " + strings.Join(keys, ", ")}
	s := suggest(a.Name)
	if a.HasValue && s != keyToken {
		e.Value = a.Value
	}
	if s != "" {
		e.Reason = ""
		e.Fix = "did you mean " + s + "?"
	}
	return e
}

// set stores one parameter in p after checking its value.
func (p *Params) set(a Arg) *Error {
	k, v := a.Name, a.Value
	if !a.HasValue && k != keyInsecure && k != keyDryRun && k != keyRescue && k != keyFollow {
		return &Error{Param: k, Kind: ErrInvalid, Reason: "no value", Fix: k + "=" + placeholder(k)}
	}
	if a.HasValue && v == "" {
		p.clear(k)
		return nil
	}
	if e := checkChars(k, v); e != nil {
		return e
	}
	switch k {
	case keyImage:
		if e := checkRef(k, v); e != nil {
			return e
		}
		p.Image = v
	case keyPubKey:
		if e := checkPubKey(v); e != nil {
			return e
		}
		p.PubKey = v
	case keyDisk:
		var disks []string
		for d := range strings.SplitSeq(v, ",") {
			disks = append(disks, strings.TrimPrefix(d, "/dev/"))
		}
		if e := checkDisks(disks, v); e != nil {
			return e
		}
		p.Disks = disks
	case keyArea:
		v = strings.TrimPrefix(v, "/dev/")
		if e := checkArea(v); e != nil {
			return e
		}
		p.Area = v
	case keyToken:
		p.Token = v
	case keyLog:
		if e := checkURL(k, v); e != nil {
			return e
		}
		p.Log = v
	case keyResume:
		if v == "auto" {
			v = ResumeAuto
		}
		if e := checkResume(v); e != nil {
			return e
		}
		p.Resume = v
	case keyInsecure:
		b, ok := parseBool(v, a.HasValue)
		if !ok {
			return invalid(k, v, "not a yes or no", "thaw.insecure=1 to allow an unsigned bundle, or leave it out")
		}
		p.Insecure = b
	case keyDryRun, keyRescue, keyFollow:
		b, ok := parseBool(v, a.HasValue)
		if !ok {
			return invalid(k, v, "not a yes or no", k+"=1, or leave it out")
		}
		switch k {
		case keyDryRun:
			p.DryRun = b
		case keyRescue:
			p.Rescue = b
		default:
			p.Follow = b
		}
	case keyStage:
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalid(k, v, "not a stage number", "leave it out: the agent sets thaw.stage=2 itself when it kexecs itself")
		}
		if e := checkStage(n); e != nil {
			return e
		}
		p.Stage = n
	case keyIface:
		if e := checkIface(v); e != nil {
			return e
		}
		p.Iface = v
	case keyRetries:
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return invalid(k, v, "not a count of retries from 0 to 1000", "thaw.retries=5 (the default), or 0 for none")
		}
		p.Retries = n
		if n == 0 {
			p.Retries = -1
		}
	case keyMinRate:
		n, ok := parseRate(v)
		if !ok {
			return invalid(k, v, "not a rate in bytes per second", "thaw.minrate=16k (the default), 1m, or 0 for no minimum")
		}
		p.MinRate = n
		if n == 0 {
			p.MinRate = -1
		}
	case keyDeadline:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return invalid(k, v, "not a positive duration", "thaw.deadline=24h (the default), or 90m")
		}
		p.Deadline = d
	case keyKernel:
		if e := checkRef(k, v); e != nil {
			return e
		}
		if !strings.Contains(v, "#sha256=") {
			return invalid(k, v, "no #sha256= digest: the agent boots only a kernel it can check", k+"="+v+"#sha256=DIGEST (sha256sum of the agent's vmlinuz)")
		}
		p.Kernel = v
	case keyIdentity:
		if e := checkIdentity(v); e != nil {
			return e
		}
		p.Identity = v
	case keyPacks:
		if e := checkRef(k, v); e != nil {
			return e
		}
		p.Packs = strings.TrimRight(v, "/")
	case keyVerify:
		if v != VerifyFirst && v != VerifyStream && v != "auto" {
			return invalid(k, v, "not first or stream", "thaw.verify=first (every chunk checked before the first write) or thaw.verify=stream (each chunk checked as it is written), or leave it out: first when a target disk holds data")
		}
		if v == "auto" {
			v = ""
		}
		p.Verify = v
	}
	return nil
}

// parseRate reads a byte rate: a number with an optional k, m or g
// suffix (powers of 1024).
func parseRate(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	mult := int64(1)
	switch strings.ToLower(v[len(v)-1:]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult > 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, false
	}
	return n * mult, true
}

// clear unsets a parameter given with an empty value.
func (p *Params) clear(k string) {
	switch k {
	case keyImage:
		p.Image = ""
	case keyPubKey:
		p.PubKey = ""
	case keyDisk:
		p.Disks = nil
	case keyArea:
		p.Area = ""
	case keyToken:
		p.Token = ""
	case keyLog:
		p.Log = ""
	case keyResume:
		p.Resume = ResumeAuto
	case keyInsecure:
		p.Insecure = false
	case keyDryRun:
		p.DryRun = false
	case keyRescue:
		p.Rescue = false
	case keyFollow:
		p.Follow = false
	case keyStage:
		p.Stage = 0
	case keyIface:
		p.Iface = ""
	case keyRetries:
		p.Retries = 0
	case keyMinRate:
		p.MinRate = 0
	case keyDeadline:
		p.Deadline = 0
	case keyVerify:
		p.Verify = ""
	case keyKernel:
		p.Kernel = ""
	case keyIdentity:
		p.Identity = ""
	case keyPacks:
		p.Packs = ""
	}
}

func placeholder(k string) string {
	switch k {
	case keyImage:
		return "http://HOST:PORT/BUNDLE"
	case keyPubKey:
		return "RW… (the second line of the minisign .pub file)"
	case keyDisk:
		return "vda[,vdb…]"
	case keyArea:
		return "vdb2"
	case keyToken:
		return "TOKEN"
	case keyLog:
		return "http://HOST:PORT/log/NAME"
	case keyResume:
		return "direct or " + k + "=kexec"
	case keyStage:
		return "2"
	case keyIface:
		return "eth0"
	case keyRetries:
		return "5"
	case keyMinRate:
		return "16k"
	case keyDeadline:
		return "24h"
	case keyVerify:
		return "first"
	case keyKernel:
		return "http://HOST:PORT/boot/vmlinuz#sha256=DIGEST"
	case keyIdentity:
		return "https://HOST:PORT/NAME.identity"
	case keyPacks:
		return "http://HOST:PORT/packs"
	case keyDryRun, keyRescue, keyFollow:
		return "1"
	}
	return "VALUE"
}

// parseBool reads a kernel-style boolean (kstrtobool); a bare parameter
// is true.
func parseBool(v string, hasValue bool) (b, ok bool) {
	if !hasValue {
		return true, true
	}
	switch strings.ToLower(v) {
	case "1", "y", "yes", "on", "true":
		return true, true
	case "0", "n", "no", "off", "false":
		return false, true
	}
	return false, false
}

// Validate checks every field that is set, as Parse does for each
// parameter. With agent true it also requires what the agent cannot run
// without: thaw.image, and thaw.area when thaw.resume=kexec. It returns
// every problem joined (see [Errors]).
func (p *Params) Validate(agent bool) error {
	var errs []error
	add := func(e *Error) {
		if e != nil {
			errs = append(errs, e)
		}
	}
	if p.Image != "" {
		add(checkChars(keyImage, p.Image))
		add(checkRef(keyImage, p.Image))
	} else if agent {
		add(&Error{Param: keyImage, Kind: ErrMissing, Reason: "the agent has no bundle to restore", Fix: "add thaw.image=http://HOST:PORT/BUNDLE (the bundle's URL, as thaw serve or any HTTP server serves it)"})
	}
	if p.PubKey != "" {
		add(checkChars(keyPubKey, p.PubKey))
		add(checkPubKey(p.PubKey))
	}
	if len(p.Disks) > 0 {
		add(checkDisks(p.Disks, strings.Join(p.Disks, ",")))
	}
	if p.Area != "" {
		add(checkChars(keyArea, p.Area))
		add(checkArea(p.Area))
	}
	add(p.checkAreaDisks())
	if p.Token != "" {
		add(checkChars(keyToken, p.Token))
	}
	if p.Log != "" {
		add(checkChars(keyLog, p.Log))
		add(checkURL(keyLog, p.Log))
	}
	if p.Kernel != "" {
		add(checkChars(keyKernel, p.Kernel))
		add(checkRef(keyKernel, p.Kernel))
	}
	if p.Identity != "" {
		add(checkChars(keyIdentity, p.Identity))
		add(checkIdentity(p.Identity))
	}
	if p.Follow {
		add(checkFollow(p.Image))
	}
	add(checkResume(p.Resume))
	add(checkStage(p.Stage))
	if p.Iface != "" {
		add(checkIface(p.Iface))
	}
	return errors.Join(errs...)
}

// checkChars refuses what cannot stand unquoted in a command line and
// cannot be in a URL, key, token, disk or link name anyway: whitespace,
// '"', control characters and non-ASCII bytes.
func checkChars(k, v string) *Error {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c > ' ' && c < 0x7f && c != '"' {
			continue
		}
		what := fmt.Sprintf("byte 0x%02x", c)
		switch c {
		case ' ':
			what = "a space"
		case '"':
			what = "a '\"' left after the kernel's quote removal"
		case '\t', '\n', '\r', '\v', '\f':
			what = "whitespace"
		}
		fix := "remove it"
		if k == keyImage || k == keyLog {
			fix = "percent-encode it in the URL (a space is %20)"
		}
		return invalid(k, v, fmt.Sprintf("%s at offset %d", what, i), fix)
	}
	return nil
}

// Local references for thaw.image and thaw.kernel: a file on the thaw
// stick's data partition, or a file in the agent's own tree.
const (
	SchemeUSB  = "usb:"
	SchemeFile = "file:"
)

// IsLocal reports whether ref (thaw.image or thaw.kernel) names a file on
// the stick or in the agent's tree rather than a URL.
func IsLocal(ref string) bool {
	return strings.HasPrefix(ref, SchemeUSB) || strings.HasPrefix(ref, SchemeFile)
}

// checkRef checks an http(s) URL, usb:NAME (a file at the top of the
// stick's data partition) or file:/PATH, each with an optional #sha256=.
func checkRef(k, v string) *Error {
	switch {
	case strings.HasPrefix(v, SchemeUSB):
		name, _, _ := strings.Cut(strings.TrimPrefix(v, SchemeUSB), "#")
		if !StickName(name) {
			return invalid(k, v, "usb: takes the name of a file at the top of the stick's data partition: letters, digits, '.', '_' and '-', not starting with '.'", k+"=usb:web1.thaw")
		}
		return checkPin(k, v)
	case strings.HasPrefix(v, SchemeFile):
		path, _, _ := strings.Cut(strings.TrimPrefix(v, SchemeFile), "#")
		if !strings.HasPrefix(path, "/") || slices.Contains(strings.Split(path, "/"), "..") {
			return invalid(k, v, "file: takes an absolute path in the agent's tree, without ..", k+"=file:/run/thaw/stick/web1.thaw")
		}
		return checkPin(k, v)
	}
	return checkURL(k, v)
}

// checkFollow: a capture in progress is followed on a store (thaw
// serve, over http or https), by its name alone: its digest is not known
// before it is made, and a stick holds finished bundles only.
func checkFollow(image string) *Error {
	u, pin, _ := strings.Cut(image, "#")
	l := strings.ToLower(u)
	switch {
	case !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://"):
		return invalid(keyFollow, "1", "thaw.follow=1 follows a capture into a store: thaw.image= must be its http(s):// URL, not "+image,
			"thaw.image=http://HOST:PORT/NAME (the --to of thaw capture --precopy), or leave thaw.follow= out")
	case pin != "":
		return invalid(keyFollow, "1", "thaw.follow=1 follows a capture not yet made: its digest cannot be pinned (#"+pin+")",
			"leave #sha256= out: the pre-copy and the bundle are checked by their signature and must carry the same bundle id")
	case strings.Contains(u, "?"):
		return invalid(keyFollow, "1", "thaw.follow=1 cannot follow a presigned URL: the chunks of a capture not yet made cannot be presigned",
			"follow a capture into thaw serve (thaw.token= with its read token), or restore from the bucket once the capture is done (thaw presign)")
	}
	return nil
}

// checkIdentity accepts where an identity may come from: https://, usb:
// or file:, never plain http (it would cross the network in clear).
func checkIdentity(v string) *Error {
	if strings.HasPrefix(strings.ToLower(v), "http://") {
		return invalid(keyIdentity, v, "an identity is a secret: over plain http it would cross the network in clear",
			keyIdentity+"=https://… (thaw serve --tls-cert), usb:NAME on the stick, or bake it into the agent (mkinitramfs -identity FILE)")
	}
	return checkRef(keyIdentity, v)
}

// StickName reports whether n may name a file in thaw.image=usb:NAME:
// letters, digits, '.', '_' and '-', not starting with '.', at most 200
// bytes.
func StickName(n string) bool {
	if n == "" || n[0] == '.' || len(n) > 200 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func checkURL(k, v string) *Error {
	if !strings.Contains(v, "://") {
		return invalid(k, v, "not a URL: no http:// or https:// (or usb:NAME, file:/PATH for a file on the stick or in the agent)", k+"=http://"+v)
	}
	u, err := url.Parse(v)
	if err != nil {
		return invalid(k, v, fmt.Sprintf("not a URL: %v", err), "write it as http://HOST[:PORT]/PATH")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid(k, v, fmt.Sprintf("the agent speaks http and https, not %s", u.Scheme), "serve it over HTTP (thaw serve, or any HTTP server) and write http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid(k, v, "no host in the URL", "write it as "+u.Scheme+"://HOST[:PORT]/PATH")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalid(k, v, fmt.Sprintf("port %s out of range", p), "a port between 1 and 65535")
		}
	}
	return checkPin(k, v)
}

// checkPin checks what follows a '#': sha256= and 64 hex digits.
func checkPin(k, v string) *Error {
	if i := strings.IndexByte(v, '#'); i >= 0 {
		d, ok := strings.CutPrefix(v[i+1:], "sha256=")
		if (k != keyImage && k != keyKernel) || !ok || len(d) != 64 || strings.Trim(strings.ToLower(d), "0123456789abcdef") != "" {
			return invalid(k, v, "after # the agent takes only sha256= and 64 hex digits (of the bundle's index for thaw.image, of the file for thaw.kernel)", k+"="+v[:i]+"#sha256=DIGEST")
		}
	}
	return nil
}

// minisign public key: "Ed" (the algorithm), an 8-byte key ID and a
// 32-byte Ed25519 key, in standard base64: 56 characters starting "RW".
const pubKeyLen = 2 + 8 + 32

func checkPubKey(v string) *Error {
	fix := "the key line of the minisign .pub file: its second line, 56 characters starting RW"
	b, err := base64.StdEncoding.DecodeString(v)
	switch {
	case err != nil && (strings.HasSuffix(v, ".pub") || strings.HasPrefix(v, "/")):
		return invalid(keyPubKey, v, "a file name, not a key", fix)
	case err != nil && strings.HasPrefix(strings.ToLower(v), "untrusted"):
		return invalid(keyPubKey, v, "the .pub file's comment line, not its key", fix)
	case err != nil:
		return invalid(keyPubKey, v, fmt.Sprintf("not base64: %v", err), fix)
	case len(b) != pubKeyLen:
		return invalid(keyPubKey, v, fmt.Sprintf("%d bytes of base64 data, a minisign public key has %d", len(b), pubKeyLen), fix)
	case b[0] != 'E' || b[1] != 'd':
		return invalid(keyPubKey, v, fmt.Sprintf("algorithm %q, a minisign public key says \"Ed\"", b[:2]), fix)
	}
	return nil
}

func checkDisks(disks []string, v string) *Error {
	seen := map[string]bool{}
	for i, d := range disks {
		switch {
		case d == "":
			return invalid(keyDisk, v, fmt.Sprintf("disk %d of the list is empty", i+1), "list the disks separated by single commas, in the bundle's disk order: thaw.disk=vda,vdb")
		case strings.HasPrefix(d, "dev/"):
			return invalid(keyDisk, v, fmt.Sprintf("%s lacks its leading /", d), "name the disk as vda or /dev/vda")
		case strings.HasPrefix(d, "/"):
			return invalid(keyDisk, v, fmt.Sprintf("%s is not under /dev: the agent writes block devices only", d), "name the disk as vda or /dev/vda")
		case d == "." || d == ".." || strings.HasPrefix(d, "../") || strings.HasSuffix(d, "/..") || strings.Contains(d, "/../") || strings.HasSuffix(d, "/") || strings.Contains(d, "//") || strings.Contains(d, "/./") || strings.HasPrefix(d, "./"):
			return invalid(keyDisk, v, fmt.Sprintf("%q is not a clean device path under /dev", d), "name the disk as vda or /dev/vda")
		case seen[d]:
			return invalid(keyDisk, v, fmt.Sprintf("%s is listed twice", d), "list each target disk once, in the bundle's disk order")
		}
		seen[d] = true
	}
	return nil
}

// checkArea checks a resume area's name as checkDisks checks a disk's.
func checkArea(v string) *Error {
	if e := checkDisks([]string{v}, v); e != nil {
		e.Param, e.Value = keyArea, v
		e.Fix = "name the resume partition as vdb2 or /dev/vdb2"
		return e
	}
	return nil
}

// checkAreaDisks: the resume area cannot be a target disk. (Whether it is
// a partition of one only the agent can tell.)
func (p *Params) checkAreaDisks() *Error {
	for _, d := range p.Disks {
		if p.Area != "" && d == p.Area {
			return invalid(keyArea, p.Area, fmt.Sprintf("%s is also a thaw.disk target, which the restore overwrites", p.Area), "a swap partition on a disk that is not in thaw.disk")
		}
	}
	return nil
}

func checkResume(v string) *Error {
	switch v {
	case ResumeAuto, ResumeDirect, ResumeKexec:
		return nil
	}
	return invalid(keyResume, v, "not direct or kexec", "thaw.resume=direct (the agent's kernel restores the image) or thaw.resume=kexec (the image's own kernel does), or leave it out to let the agent choose")
}

func checkStage(n int) *Error {
	if n >= 0 && n <= 2 {
		return nil
	}
	return invalid(keyStage, strconv.Itoa(n), "the agent has stages 1 and 2", "leave it out: the agent sets thaw.stage=2 itself when it kexecs itself")
}

// checkIface is the kernel's dev_valid_name.
func checkIface(v string) *Error {
	fix := "a link name as `ip link` shows it, such as eth0 or enp1s0"
	switch {
	case len(v) > 15:
		return invalid(keyIface, v, fmt.Sprintf("%d characters, a link name has at most 15", len(v)), fix)
	case v == "." || v == "..", strings.ContainsAny(v, "/:"):
		return invalid(keyIface, v, "not a valid link name", fix)
	}
	return nil
}

// Args gives the parameters back as kernel command line arguments, each
// "thaw.name=value", in a fixed order; [Parse] of them joined with spaces
// gives p back (without Warnings). This is what the agent appends for its
// own second stage. It carries the token: do not log it (see String).
func (p *Params) Args() []string {
	var a []string
	add := func(k, v string) {
		if v != "" {
			a = append(a, k+"="+v)
		}
	}
	add(keyImage, p.Image)
	add(keyPubKey, p.PubKey)
	add(keyDisk, strings.Join(p.Disks, ","))
	add(keyArea, p.Area)
	add(keyToken, p.Token)
	add(keyLog, p.Log)
	add(keyResume, p.Resume)
	if p.Insecure {
		add(keyInsecure, "1")
	}
	if p.Stage != 0 {
		add(keyStage, strconv.Itoa(p.Stage))
	}
	add(keyIface, p.Iface)
	switch {
	case p.Retries < 0:
		add(keyRetries, "0")
	case p.Retries > 0:
		add(keyRetries, strconv.Itoa(p.Retries))
	}
	switch {
	case p.MinRate < 0:
		add(keyMinRate, "0")
	case p.MinRate > 0:
		add(keyMinRate, strconv.FormatInt(p.MinRate, 10))
	}
	if p.Deadline > 0 {
		add(keyDeadline, p.Deadline.String())
	}
	if p.Verify != "" {
		add(keyVerify, p.Verify)
	}
	add(keyKernel, p.Kernel)
	add(keyIdentity, p.Identity)
	add(keyPacks, p.Packs)
	if p.DryRun {
		add(keyDryRun, "1")
	}
	if p.Rescue {
		add(keyRescue, "1")
	}
	if p.Follow {
		add(keyFollow, "1")
	}
	return a
}

// Cmdline is Args joined with spaces.
func (p *Params) Cmdline() string { return strings.Join(p.Args(), " ") }

// String is Cmdline with the token's value hidden, for logs and the
// console.
func (p *Params) String() string {
	a := p.Args()
	for i, s := range a {
		if strings.HasPrefix(s, keyToken+"=") {
			a[i] = keyToken + "=…"
		}
	}
	return strings.Join(a, " ")
}
