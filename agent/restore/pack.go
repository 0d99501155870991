package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// needsPack reports whether a plan lacks a driver for a disk controller
// or NIC of this machine, leaves RAM or CPUs unused, or refuses a disk
// on plain partitions, which a driver pack could give or move.
func needsPack(pl *plan.Plan) bool {
	if pl.UnusedRAM > 0 || pl.UnusedCPUs > 0 || len(pl.PlainDisks) > 0 {
		return true
	}
	for _, d := range pl.Drivers {
		if d.Module == "" && (d.Kind == "disk" || d.Kind == "nic") {
			return true
		}
	}
	return false
}

// maxPack bounds the pack file read: its header, signature and modules.
const maxPack = driverpack.MaxHeader + driverpack.MaxTotal + 1<<20

// loadPack fetches the image kernel's driver pack from st.Packs, verifies
// it with the key that verified the bundle, and checks it against the
// image kernel. No pack there is not an error (nil, nil): the plan then
// names the command that makes one. A pack that is there but cannot be
// trusted or loaded is a refusal.
func (r *run) loadPack(ctx context.Context, aliases *plan.Aliases) (*driverpack.Pack, *plan.Refusal) {
	st := r.st
	ref := st.Packs + "/" + driverpack.FileName(aliases.Release)
	refuse := func(reason, fix string) *plan.Refusal {
		return &plan.Refusal{Check: plan.CheckPack, Reason: fmt.Sprintf("driver pack %s: %s", ref, reason), Hint: fix}
	}
	rebuild := fmt.Sprintf("build it again for the image kernel and sign it with the bundle's key: thaw driverpack build --release %s --modules … --key KEY --out DIR", aliases.Release)
	blob, err := r.env.Store.Open(ctx, ref, httpra.Options{Token: st.Token, Logf: r.logf, Retries: st.Retries, MinRate: st.MinRate, Deadline: 10 * time.Minute})
	if err != nil {
		var se *httpra.StatusError
		if errors.Is(err, os.ErrNotExist) || (errors.As(err, &se) && se.Code == http.StatusNotFound) {
			r.logf("driver pack: none at %s", ref)
			return nil, nil
		}
		return nil, refuse(err.Error(), "check thaw.packs= and the store")
	}
	defer blob.Close()
	if blob.Size() > maxPack {
		return nil, refuse(fmt.Sprintf("%d bytes, more than a pack holds (%d)", blob.Size(), maxPack), rebuild)
	}
	if st.signer == nil {
		return nil, refuse("the bundle was not verified with a key (thaw.insecure), so nothing can verify the pack", "give the key that signs bundles and packs (thaw.pubkey=, or a key built into the agent)")
	}
	p, err := driverpack.Read(io.NewSectionReader(blob, 0, blob.Size()), st.signer.Key)
	if err != nil {
		return nil, refuse(err.Error(), rebuild)
	}
	if err := p.Check(aliases.Release, aliases.Vermagic); err != nil {
		return nil, refuse(err.Error(), rebuild)
	}
	r.logf("driver pack %s: %s for %s, signed by key %016X (%s)", driverpack.FileName(p.Header.Release), strings.Join(p.Names(), " "), p.Header.Release, st.signer.Key.ID(), st.signer.Name)
	return p, nil
}
