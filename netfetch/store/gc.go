package store

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
)

// GCOptions tune GC.
type GCOptions struct {
	// Grace keeps an unreferenced chunk younger than this: a pack being
	// uploaded stores its chunks before its bundle object lands.
	Grace time.Duration
	// DryRun counts what would go, and removes nothing.
	DryRun bool
	// Now is the time GC runs at; zero means time.Now().
	Now  time.Time
	Logf func(format string, a ...any)
}

// GCReport says what GC found and did.
type GCReport struct {
	Bundles     int   // version 2 bundle objects read (their chunks are kept)
	Referenced  int   // distinct chunks they name
	Kept        int   // chunks kept
	Young       int   // of them, unreferenced but within the grace period
	Leased      int   // of them, unreferenced but in a directory a capture holds a lease on
	Removed     int   // chunks removed (or, in a dry run, that would be)
	RemovedSize int64 // their bytes
	Precopies   int   // pre-copy objects removed, their bundle landed (a bucket)
	Leases      []Lease
}

// GC removes the chunks of the store in dir that no bundle names: mark
// (read every version 2 bundle object), then sweep each chunk directory.
// It never races a capture: while a lease (a capture that asked which
// chunks are here, until its bundle lands) is live on a directory, no chunk
// of that directory is removed; and unreferenced chunks younger than
// Grace stay, for uploads that asked nothing. A file in the store that
// looks like a bundle but cannot be read stops the sweep of its
// directory: what it names is unknown.
func GC(dir string, o GCOptions) (*GCReport, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	defer root.Close()
	rep := &GCReport{}
	leased, err := liveLeases(root, o, rep)
	if err != nil {
		return nil, err
	}

	// Mark.
	refs := map[string]map[string]bool{} // bundle directory → chunk sums
	unreadable := map[string]string{}    // bundle directory → why
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (strings.HasPrefix(d.Name(), reservedPrefix) || d.Name() == bundle.StoreChunks || p == "logs") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), reservedPrefix) {
			return nil
		}
		sums, err := bundleChunks(root, p)
		switch {
		case err != nil:
			unreadable[path.Dir(p)] = fmt.Sprintf("%s: %v", p, err)
		case sums != nil:
			rep.Bundles++
			set := refs[path.Dir(p)]
			if set == nil {
				set = map[string]bool{}
				refs[path.Dir(p)] = set
			}
			for _, s := range sums {
				set[s] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the store: %w", err)
	}
	for _, set := range refs {
		rep.Referenced += len(set)
	}

	// Sweep.
	var cdirs []string
	fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == bundle.StoreChunks {
			cdirs = append(cdirs, p)
			return fs.SkipDir
		}
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), reservedPrefix) {
			return fs.SkipDir
		}
		return nil
	})
	sort.Strings(cdirs)
	for _, cdir := range cdirs {
		bdir := path.Dir(cdir)
		if why, ok := unreadable[bdir]; ok {
			o.Logf("%s: not swept: %s (move it away or fix it, then run gc again)", cdir, why)
			continue
		}
		err := fs.WalkDir(root.FS(), cdir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(d.Name(), reservedPrefix):
				return nil // an upload in progress
			case refs[bdir][d.Name()]:
				rep.Kept++
			case leased[bdir]:
				rep.Kept++
				rep.Leased++
			case o.Now.Sub(fi.ModTime()) < o.Grace:
				rep.Kept++
				rep.Young++
			default:
				if !o.DryRun {
					if err := root.Remove(p); err != nil {
						return err
					}
				}
				rep.Removed++
				rep.RemovedSize += fi.Size()
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("sweeping %s: %w", cdir, err)
		}
	}
	return rep, nil
}

// bundleChunks lists the chunks a version 2 bundle object names; nil, nil
// for a file that is no such bundle (a version 1 bundle, a log).
func bundleChunks(root *os.Root, p string) ([]string, error) {
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return bundle.StoreObjectChunks(f, fi.Size())
}

// liveLeases reads the leases, removes the expired ones, and returns the
// directories the live ones hold.
func liveLeases(root *os.Root, o GCOptions, rep *GCReport) (map[string]bool, error) {
	held := map[string]bool{}
	ents, err := fs.ReadDir(root.FS(), leaseDir)
	if err != nil {
		if os.IsNotExist(err) {
			return held, nil
		}
		return nil, fmt.Errorf("leases: %w", err)
	}
	for _, e := range ents {
		p := path.Join(leaseDir, e.Name())
		b, err := root.ReadFile(p)
		var l Lease
		if err == nil {
			err = json.Unmarshal(b, &l)
		}
		if err != nil {
			// What it holds is unknown: sweep nothing.
			return nil, fmt.Errorf("lease %s cannot be read (%v): gc removes nothing while it is there; remove it once no capture into this store is running", p, err)
		}
		if !o.Now.Before(l.Expires) {
			if !o.DryRun {
				root.Remove(p)
			}
			o.Logf("lease of /%s expired at %s (its capture never landed)", l.Path, l.Expires.Format(time.RFC3339))
			continue
		}
		held[path.Dir(l.Path)] = true
		rep.Leases = append(rep.Leases, l)
	}
	return held, nil
}
