package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/httpra"
)

// needsKernel: a first stage that will boot the agent again (the memory
// maps differ) needs the agent kernel before the first write.
func needsKernel(r *run) bool { return writes(r) && r.st.Replay }

// agentKernel finds the kernel for the second stage: the initramfs's own
// copy, or thaw.kernel= fetched and checked against its digest. A missing
// or wrong kernel is refused here, before anything is written.
func agentKernel(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("kernel", "the agent kernel for stage 2")
	if p := r.env.Stage2.Kernel(); p != "" {
		st.kernel = p
		r.rep.Done("the initramfs's own copy")
		return nil
	}
	if st.Params == nil || st.Params.Kernel == "" {
		return r.refuse("no agent kernel for stage 2", plan.CheckKexec,
			"the memory maps differ, so the agent must boot itself again with the source's map, but this initramfs carries no copy of its kernel and thaw.kernel= is not set",
			"add thaw.kernel=URL#sha256=DIGEST naming the agent's vmlinuz (thaw media pxe writes it), or build the initramfs with its kernel copy (mkinitramfs -kernel-copy)")
	}
	ref, want, err := bundle.SplitPin(st.Params.Kernel)
	if err != nil || want == "" {
		return r.refuse("bad thaw.kernel", plan.CheckParams, fmt.Sprintf("thaw.kernel=%s: %v", st.Params.Kernel, err), "thaw.kernel=URL#sha256=DIGEST, the SHA-256 of the agent's vmlinuz")
	}
	// The store's token goes only to the bundle's own server.
	opt := httpra.Options{Logf: r.logf, Retries: st.Retries, MinRate: st.MinRate, Deadline: st.Deadline}
	if sameHost(ref, st.Image) {
		opt.Token = st.Token
	}
	ref = stickRef(ref)
	blob, err := r.env.Store.Open(ctx, ref, opt)
	if err != nil {
		return r.refuse("agent kernel unavailable", plan.CheckKexec, fmt.Sprintf("thaw.kernel: %v", err), "serve the agent's vmlinuz at that URL (thaw serve --boot), or fix the URL")
	}
	defer blob.Close()
	h := sha256.New()
	path, err := r.env.Stage2.KeepKernel(io.TeeReader(io.NewSectionReader(blob, 0, blob.Size()), h))
	if err != nil {
		return r.refuse("agent kernel unavailable", plan.CheckKexec, fmt.Sprintf("thaw.kernel %s: %v", ref, err), "check the URL and the agent's free memory")
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		r.env.Stage2.DropKernel(path)
		return r.refuse("not the agent kernel asked for", plan.CheckKexec,
			fmt.Sprintf("thaw.kernel %s has SHA-256 %s, not %s", ref, got, want),
			"serve the agent's own vmlinuz there, or give its digest (sha256sum vmlinuz)")
	}
	st.kernel = path
	st.onClose(func() { r.env.Stage2.DropKernel(path) })
	r.rep.Done(fmt.Sprintf("%d MiB from %s, SHA-256 checked", blob.Size()>>20, ref))
	return nil
}

// sameHost reports whether two URLs name the same scheme, host and port.
func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}
