package plan

import (
	"fmt"
	"strings"
)

// Check names what a refusal is about. Tests and tools match the check,
// never the wording of the reason.
type Check string

// The checks. Every refusal of thaw plan, thaw restore, thaw agent and
// thaw prepare carries one of these.
const (
	CheckParams    Check = "params"    // the agent's kernel command line
	CheckImage     Check = "image"     // the bundle: readable, complete
	CheckPin       Check = "pin"       // thaw.image=URL#sha256=
	CheckPubkey    Check = "pubkey"    // a key from the command line beside baked-in ones
	CheckSignature Check = "signature" // the index signature
	CheckIdentity  Check = "identity"  // decrypting an encrypted bundle
	CheckCPU       Check = "cpu"
	CheckFirmware  Check = "firmware" // BIOS against UEFI
	CheckMemory    Check = "memory"
	CheckDisk      Check = "disk"
	CheckMedium    Check = "medium" // thaw.disk= naming the thaw stick
	CheckDriver    Check = "driver"
	CheckPack      Check = "pack" // a driver pack: unsigned, altered, another release, not loadable
	CheckSlot      Check = "slot"
	CheckCrypt     Check = "crypt" // dm-crypt on a moving disk whose key cannot be reloaded
	CheckPCIWindow Check = "pciwindow"
	CheckMailbox   Check = "mailbox"
	CheckResume    Check = "resume" // the resume path and its area
	CheckKexec     Check = "kexec"
	CheckVerify    Check = "verify" // a chunk that does not match the signed index
	// thaw prepare
	CheckRoot      Check = "root"
	CheckPartition Check = "partition"
	CheckInitramfs Check = "initramfs"
	CheckFstab     Check = "fstab"
	CheckBinary    Check = "binary"
	// CheckError is a failure that is not a refusal: an error on the way.
	CheckError Check = "error"
)

// Refusal is one reason the bundle cannot be restored here, with the fix.
type Refusal struct {
	Check  Check  `json:"check"`
	Reason string `json:"reason"`
	Hint   string `json:"hint"`
}

// Refused is the error of a command that refused; the caller says what
// state the disks are in.
type Refused struct {
	Title    string    `json:"title"`
	Refusals []Refusal `json:"refusals"`
}

// NewRefused makes a Refused with one refusal.
func NewRefused(title string, check Check, reason, hint string) *Refused {
	return &Refused{title, []Refusal{{check, reason, hint}}}
}

func (r *Refused) Error() string {
	var s []string
	for _, x := range r.Refusals {
		s = append(s, fmt.Sprintf("%s: %s (fix: %s)", x.Check, x.Reason, x.Hint))
	}
	if r.Title == "" {
		return strings.Join(s, "; ")
	}
	return r.Title + ": " + strings.Join(s, "; ")
}

// Has reports whether r carries a refusal of check c.
func (r *Refused) Has(c Check) bool {
	for _, x := range r.Refusals {
		if x.Check == c {
			return true
		}
	}
	return false
}
