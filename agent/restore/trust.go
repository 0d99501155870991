package restore

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/bundle"
)

// Where the agent's initramfs keeps what it trusts (mkinitramfs -pubkey,
// -identity, -allow-cmdline-key). Identities never come from the kernel
// command line.
const (
	PubkeyDir       = "/etc/thaw/pubkeys"
	IdentityDir     = "/etc/thaw/identities"
	AllowCmdlineKey = "/etc/thaw/allow-cmdline-key"
)

// AgentTrust reads the keys and identities built into the agent under
// root ("/" on the agent). A file that does not parse is a refusal (a
// *plan.Refused naming the file): the agent was built wrong.
func AgentTrust(root string) (Trust, error) {
	var t Trust
	keys, _ := filepath.Glob(filepath.Join(root, PubkeyDir, "*"))
	sort.Strings(keys)
	for _, f := range keys {
		k, err := bundle.LoadPublicKey(f)
		if err != nil {
			return t, plan.NewRefused("a key built into the agent", plan.CheckSignature, err.Error(), "rebuild the agent with a valid key (make initramfs PUBKEY=)")
		}
		t.Keys = append(t.Keys, NamedKey{k, f})
	}
	if _, err := os.Stat(filepath.Join(root, AllowCmdlineKey)); err != nil {
		t.Pinned = true
	}
	ids, _ := filepath.Glob(filepath.Join(root, IdentityDir, "*"))
	sort.Strings(ids)
	for _, f := range ids {
		id, err := bundle.LoadIdentities(f)
		if err != nil {
			return t, plan.NewRefused("an identity built into the agent", plan.CheckIdentity, err.Error(), "rebuild the agent with a valid identity (mkinitramfs -identity FILE)")
		}
		t.Identities = append(t.Identities, id...)
	}
	return t, nil
}
