package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/netfetch/store"
)

const gcHelp = `
Removes the chunks of a store that no bundle names any more: run it on the
machine that holds thaw serve's directory, after deleting bundles.

It reads every bundle in the directory (mark), then removes each chunk that
none of them names (sweep). It never races a capture:
  - a capture that asked the store which chunks it has holds a lease on its
    directory until its bundle lands (or for 12 h): nothing there is removed
    meanwhile;
  - a chunk younger than --grace stays, for uploads still on their way.
A file that looks like a bundle but cannot be read stops the sweep of its
directory, since what it names is unknown.

In a bucket (--store s3://BUCKET/PREFIX/) the same holds for the bundle
objects directly under the prefix and its chunks/; a capture's lease is an
object under .thaw-leases/ that ends when its bundle is stored.

  thaw gc --store /srv/thaw --dry-run
  thaw gc --store /srv/thaw
  thaw gc --store s3://images/fleet/
`

func runGC(args []string) error {
	fs := newFlags("gc", "--store DIR [--grace D] [--dry-run]", gcHelp)
	dir := fs.String("store", "", "the store's directory (thaw serve --dir), or s3://BUCKET/PREFIX/ (AWS_ENDPOINT_URL and the credentials from the environment)")
	grace := fs.Duration("grace", time.Hour, "keep unreferenced chunks younger than this")
	dry := fs.Bool("dry-run", false, "say what would be removed, remove nothing")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *dir == "" {
		fs.Usage()
		return &exitError{2, errors.New("give --store DIR")}
	}
	if *grace < 0 {
		return &exitError{2, fmt.Errorf("--grace %v: give a duration of 0 or more", *grace)}
	}
	opt := store.GCOptions{Grace: *grace, DryRun: *dry, Logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "thaw gc: "+f+"\n", a...)
	}}
	var rep *store.GCReport
	if s3.IsURL(*dir) {
		// A bucket's prefix: the bundles directly in it, its chunks/.
		o, err := s3.Parse(strings.TrimSuffix(*dir, "/")+"/", "x")
		if err != nil {
			return &exitError{2, err}
		}
		c, err := s3Client("", "", nil)
		if err != nil {
			return err
		}
		rep, err = s3.GC(context.Background(), c, o.Bucket, o.Dir(), opt)
		if err != nil {
			return err
		}
	} else if rep, err = store.GC(*dir, opt); err != nil {
		return err
	}
	for _, l := range rep.Leases {
		fmt.Printf("lease: capture of /%s since %s (until %s): its directory is kept whole\n", l.Path, l.Start.Local().Format(time.RFC3339), l.Expires.Local().Format(time.RFC3339))
	}
	verb := "removed"
	if *dry {
		verb = "would remove"
	}
	if rep.Precopies > 0 {
		fmt.Printf("%s %d pre-copy object(s) whose bundle has landed\n", verb, rep.Precopies)
	}
	fmt.Printf("%d bundles name %d chunks; %s %d chunks (%d MiB); kept %d (%d young, %d under a lease)\n",
		rep.Bundles, rep.Referenced, verb, rep.Removed, rep.RemovedSize>>20, rep.Kept, rep.Young, rep.Leased)
	return nil
}
