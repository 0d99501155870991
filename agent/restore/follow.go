package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strconv"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/httpra"
	"github.com/thawlinux/thaw/netfetch/s3"
)

// following is a restore that follows a capture in progress (thaw.follow=1,
// thaw restore --follow). The first pass takes the capture's pre-copy,
// NAME.precopy (the disks as read while the server runs), through the
// stages up to the write; the follow stage then waits for the bundle NAME
// with the same id, and the stages from the signature on run again for
// it, fetching and writing only the chunks that the pre-copy did not
// already put there.
type following struct {
	// final: the second pass, on the capture's bundle.
	final bool
	// id is the pre-copy's bundle id, which the capture's bundle carries.
	id string
	// written is, for each disk of the pre-copy, the chunk written at
	// each offset.
	written []map[int64]bundle.Chunk
}

// precopyPass reports whether this run is the first pass of a follow:
// the pre-copy, no memory image, nothing resumed.
func (s *State) precopyPass() bool { return s.follow != nil && !s.follow.final }

// skipWritten is the Fetch option that leaves out, in the second pass,
// the chunks of disk i that the pre-copy wrote with the same bytes at the
// same place. The chunk that holds the resume header (hold) is always
// fetched: its page is written held back.
func (s *State) skipWritten(i int, hold *int64) func(bundle.Chunk) bool {
	if s.follow == nil || !s.follow.final || i >= len(s.follow.written) {
		return nil
	}
	w := s.follow.written[i]
	return func(c bundle.Chunk) bool {
		if hold != nil && *hold >= c.Off && *hold < c.Off+c.Len {
			return false
		}
		p, ok := w[c.Off]
		return ok && p.Len == c.Len && p.Zero == c.Zero && p.SHA256 == c.SHA256
	}
}

// followWait bounds the wait for a pre-copy or a capture's bundle when
// neither thaw.deadline= nor --deadline says otherwise.
const followWait = 24 * time.Hour

// waitFor opens ref once it exists, asking again with a pause that grows
// from a tenth of a second to most (the wait for the bundle is downtime:
// a quarter second; for the pre-copy, two) while the store answers 404.
// thaw serve is asked to hold each request until the object lands
// (longPoll), so that the wait ends as the capture's upload does.
// accept, if set, may turn an object down (an older bundle): the wait
// goes on. Every 30 seconds it says what it waits for.
func (r *run) waitFor(ctx context.Context, ref, what string, most time.Duration, opt httpra.Options, accept func(Blob) (bool, string)) (Blob, error) {
	limit := r.st.Deadline
	if limit == 0 {
		limit = followWait
	}
	// (Not a context with this deadline: the blob returned reads on
	// with ctx.)
	end := time.Now().Add(limit)
	start, said := time.Now(), time.Now()
	pause := 100 * time.Millisecond
	why := "not there yet"
	poll := longPoll(ref)
	for {
		blob, err := r.env.Store.Open(ctx, poll, opt)
		if err == nil && poll != ref {
			// It is there: read it by its own name.
			blob.Close()
			blob, err = r.env.Store.Open(ctx, ref, opt)
		}
		switch {
		case err == nil && accept == nil:
			return blob, nil
		case err == nil:
			ok, reason := accept(blob)
			if ok {
				return blob, nil
			}
			blob.Close()
			why = reason
		case errors.Is(err, httpra.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
			why = "not there yet"
		default:
			return nil, err
		}
		if time.Since(said) >= 30*time.Second {
			said = time.Now()
			r.logf("still waiting for %s (%s, %.0fs): %s", what, s3.Redact(ref), time.Since(start).Seconds(), why)
		}
		if time.Now().Add(pause).After(end) {
			return nil, fmt.Errorf("waited %s for %s at %s (%s): the limit of thaw.deadline=/--deadline", limit, what, s3.Redact(ref), why)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, most)
	}
}

// longPollWait is how long thaw serve holds one request of waitFor.
const longPollWait = 25 // seconds; under store.MaxWait and httpra's 60 s

// longPoll is ref with ?wait= when it is an http(s) URL of its own (not a
// presigned one, whose signature covers its query): thaw serve then
// answers once the object exists, or 404 after the wait; another server
// ignores the parameter and answers at once.
func longPoll(ref string) string {
	u, err := url.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || presigned(ref) {
		return ref
	}
	q := u.Query()
	q.Set("wait", strconv.Itoa(longPollWait))
	u.RawQuery = q.Encode()
	return u.String()
}

// openPrecopy is the image stage of a follow's first pass: it waits for
// the capture's pre-copy beside the bundle.
func (r *run) openPrecopy(ctx context.Context, image string, opt httpra.Options) (Blob, error) {
	r.st.follow = &following{}
	ref := image + bundle.PrecopySuffix
	r.logf("following the capture of %s: waiting for its pre-copy %s", s3.Redact(image), s3.Redact(ref))
	return r.waitFor(ctx, ref, "the capture's pre-copy", 2*time.Second, opt, nil)
}

// checkFollowed checks the bundle the signature stage opened against the
// follow: the first pass takes only a pre-copy, the second only the
// bundle with the pre-copy's id, and a restore that follows nothing never
// takes a pre-copy.
func (r *run) checkFollowed(br *bundle.Reader) error {
	st := r.st
	switch {
	case st.follow == nil && br.Index.Precopy:
		return r.refuse("a pre-copy, not a bundle", plan.CheckImage,
			fmt.Sprintf("%s is the pre-copy of a capture (its disks, read while the server ran; bundle id %s): it holds no memory image", s3.Redact(st.Image), br.Index.ID),
			"restore the capture's bundle (the same name without .precopy) once it is stored, or follow the capture: thaw.follow=1 (thaw restore --follow) with the bundle's URL")
	case st.precopyPass() && !br.Index.Precopy:
		return r.refuse("not a pre-copy", plan.CheckImage,
			fmt.Sprintf("%s%s is a bundle, not the pre-copy of a capture", s3.Redact(st.Image), bundle.PrecopySuffix),
			"give thaw.image= the name the capture stores (its --to), not the pre-copy's")
	case st.precopyPass():
		st.follow.id = br.Index.ID
		r.logf("pre-copy of bundle id %s: %d disk(s), written %s while the server ran", br.Index.ID, len(br.Manifest.Disks), br.Label.Created)
	case st.follow != nil && (br.Index.Precopy || br.Index.ID != st.follow.id):
		return r.refuse("not the capture followed", plan.CheckPin,
			fmt.Sprintf("%s carries bundle id %s, the pre-copy written here id %s", s3.Redact(st.Image), br.Index.ID, st.follow.id),
			"follow the capture again from its start: boot the agent before thaw capture --precopy")
	}
	return nil
}

// wrotePrecopy remembers what the first pass wrote on each disk.
func (r *run) wrotePrecopy() {
	st := r.st
	br := st.Bundle
	for _, d := range br.Manifest.Disks {
		w := map[int64]bundle.Chunk{}
		if s := br.Index.Stream(d.Stream); s != nil {
			for _, c := range s.Chunks {
				w[c.Off] = c
			}
		}
		st.follow.written = append(st.follow.written, w)
	}
}

// followCapture is the follow stage: the pre-copy is on the disks; it
// waits for the capture's bundle (the same id as the pre-copy, signed by
// the same key), then sends the pipeline back to the signature stage with
// it open.
func followCapture(ctx context.Context, r *run) error {
	st := r.st
	r.rep.Begin("follow", "waiting for the capture's bundle "+s3.Redact(st.Image))
	opt := httpra.Options{Token: st.Token, Logf: r.logf, Retries: st.Retries, MinRate: st.MinRate, Deadline: st.Deadline}
	key := st.signer // nil: unverified (thaw.insecure=1)
	id := st.follow.id
	var got *bundle.Reader
	accept := func(b Blob) (bool, string) {
		var br *bundle.Reader
		var err error
		if key != nil {
			br, err = bundle.Open(b, b.Size(), &key.Key)
		} else {
			br, err = bundle.Open(b, b.Size(), nil)
		}
		if err != nil {
			return false, fmt.Sprintf("the bundle there does not open (%v): an older or foreign one", err)
		}
		if br.Index.ID != id {
			br.Close()
			return false, fmt.Sprintf("the bundle there is id %s, written %s: not this capture's", br.Index.ID, br.Label.Created)
		}
		got = br
		return true, ""
	}
	t0 := time.Now()
	blob, err := r.waitFor(ctx, st.Image, "the capture's bundle (id "+id+")", 250*time.Millisecond, opt, accept)
	if err != nil {
		return r.fail(err)
	}
	st.onClose(func() { blob.Close() })
	// The signature stage takes the bundle as opened here (st.signer
	// verified it), and checks the rest.
	st.blob, st.Bundle = blob, got
	st.Written = nil // (the pre-copy's, logged)
	st.follow.final = true
	r.again = "signature"
	r.rep.Done(fmt.Sprintf("bundle id %s stored, after %.1fs", id, time.Since(t0).Seconds()))
	return nil
}
