package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/netfetch/store"
)

// leasePrefix holds, beside the bundles of a prefix, one object per
// capture in progress: store.Lease as JSON.
const leasePrefix = ".thaw-leases/"

// Lease tells GC that a capture of o relies on the chunks beside it
// (those it was told are there): until o is stored after the lease's
// start, or for store.LeaseTTL, GC removes no chunk of o's prefix. A
// capture takes it before it lists the chunks.
func (c *Client) Lease(ctx context.Context, o Object) error {
	now := time.Now().UTC()
	b, _ := json.Marshal(store.Lease{Path: o.Key, Start: now, Expires: now.Add(store.LeaseTTL)})
	return c.Put(ctx, leaseObject(o), bytes.NewReader(b), int64(len(b)))
}

func leaseObject(o Object) Object {
	sum := sha256.Sum256([]byte(o.Key))
	return o.Sibling(leasePrefix + hex.EncodeToString(sum[:8]) + ".json")
}

// GC removes the chunks of a prefix that no bundle object in it names,
// as store.GC does for thaw serve's directory: mark (read every version 2
// bundle object directly under the prefix), then sweep its chunks/. A
// pre-copy object NAME.precopy goes first once NAME landed after it. A
// live lease keeps every chunk; an unreferenced chunk younger than
// o.Grace stays; an object that looks like a bundle but cannot be read
// stops the sweep, since what it names is unknown.
func GC(ctx context.Context, c *Client, bucket, prefix string, o store.GCOptions) (*store.GCReport, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	objs, err := c.List(ctx, bucket, prefix)
	if err != nil {
		return nil, err
	}
	rep := &store.GCReport{}
	modified := map[string]time.Time{}
	var chunks, leases, bundles []Info
	for _, in := range objs {
		rel := strings.TrimPrefix(in.Key, prefix)
		modified[in.Key] = in.Modified
		switch {
		case strings.HasPrefix(rel, "chunks/"):
			if _, ok := chunkName(strings.TrimPrefix(rel, "chunks/")); ok {
				chunks = append(chunks, in)
			}
		case strings.HasPrefix(rel, leasePrefix):
			leases = append(leases, in)
		case !strings.Contains(rel, "/") && !strings.HasSuffix(rel, ".presigned"):
			bundles = append(bundles, in)
		}
	}
	live := false
	for _, in := range leases {
		var l store.Lease
		b, err := c.read(ctx, in.Object, 4096)
		if err == nil {
			err = json.Unmarshal(b, &l)
		}
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w: remove it if no capture is running", in.Object, err)
		}
		if landed, ok := modified[l.Path]; (ok && !landed.Before(l.Start)) || !o.Now.Before(l.Expires) {
			continue
		}
		live = true
		rep.Leases = append(rep.Leases, l)
	}
	// A pre-copy whose bundle has landed since is done with, as thaw serve
	// removes it when the bundle lands: a bucket has no server to do it.
	kept := bundles[:0]
	for _, in := range bundles {
		name, isPre := strings.CutSuffix(in.Key, bundle.PrecopySuffix)
		if landed, ok := modified[name]; isPre && ok && !landed.Before(in.Modified) {
			if !o.DryRun {
				if err := c.Remove(ctx, in.Object); err != nil {
					return rep, err
				}
			}
			rep.Precopies++
			continue
		}
		kept = append(kept, in)
	}
	bundles = kept
	ref := map[string]bool{}
	for _, in := range bundles {
		head, err := c.read(ctx, in.Object, bundle.HeaderSize)
		if err != nil {
			return nil, err
		}
		if !bundle.IsStoreObject(head) {
			continue
		}
		obj, size, err := c.Get(ctx, in.Object)
		if err != nil {
			return nil, err
		}
		sums, err := bundle.StoreObjectChunks(obj, size)
		obj.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w: no chunk is removed while a bundle cannot be read", in.Object, err)
		}
		rep.Bundles++
		for _, s := range sums {
			ref[s] = true
		}
	}
	rep.Referenced = len(ref)
	for _, in := range chunks {
		sum := in.Key[strings.LastIndexByte(in.Key, '/')+1:]
		switch {
		case ref[sum]:
			rep.Kept++
		case live:
			rep.Kept++
			rep.Leased++
		case o.Now.Sub(in.Modified) < o.Grace:
			rep.Kept++
			rep.Young++
		default:
			if !o.DryRun {
				if err := c.Remove(ctx, in.Object); err != nil {
					return rep, err
				}
			}
			rep.Removed++
			rep.RemovedSize += in.Size
		}
	}
	o.Logf("%s%s/%s: %d bundles, %d chunks referenced, %d removed", Scheme, bucket, prefix, rep.Bundles, rep.Referenced, rep.Removed)
	return rep, nil
}

// read reads at most max bytes from the start of o.
func (c *Client) read(ctx context.Context, o Object, max int64) ([]byte, error) {
	obj, _, err := c.Get(ctx, o)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, max))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", o, err)
	}
	return b, nil
}
