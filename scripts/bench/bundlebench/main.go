// Command bundlebench measures the bundle format on a synthetic capture:
// a memory snapshot stream and a disk of the given sizes, generated on the
// fly (pages of random, text-like and zero content in the proportions of a
// busy server; the disk has large zero regions). It writes a bundle to a
// temporary file, reads it back verifying every chunk, and stores the same
// memory as the kernel's own LZO image (images/swsusp Writer): the baseline
// measured in the same run. It prints throughputs, their ratio to the
// baseline, sizes and the peak RSS.
//
//	go run ./scripts/bench/bundlebench -memory 1024 -disk 1024
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/bench/synth"
)

func maxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss << 10
}

func main() {
	memMB := flag.Int("memory", 1024, "MiB of memory stream")
	diskMB := flag.Int("disk", 1024, "MiB of disk stream")
	dir := flag.String("dir", os.TempDir(), "where the temporary files go")
	flag.Parse()
	pages := *memMB << 8
	total := int64(*memMB+*diskMB) << 20

	// Baseline: the kernel's LZO image of the same memory.
	swap := filepath.Join(*dir, "bench.swap")
	f, err := os.Create(swap)
	check(err)
	defer os.Remove(swap)
	areaPages := uint32(pages + pages/8 + 4096)
	check(f.Truncate(int64(areaPages) * 4096))
	check(swsusp.FormatSwap(f, 0, areaPages, [16]byte{1}, "bench"))
	t0 := time.Now()
	w, err := swsusp.NewWriter(f, int64(areaPages)*4096, 0, swsusp.WriterOptions{Compression: swsusp.CompressLZO})
	check(err)
	wr, err := w.WriteStream(synth.MemoryStream(1, pages))
	check(err)
	lzoSecs := time.Since(t0).Seconds()
	lzoBytes := wr.SwapPages * 4096
	memBytes := float64(wr.Pages * 4096)
	f.Close()

	// The bundle: memory then disk.
	path := filepath.Join(*dir, "bench.thaw")
	out, err := os.Create(path)
	check(err)
	defer os.Remove(path)
	t0 = time.Now()
	bw, err := bundle.NewWriter(out, bundle.WriterOptions{})
	check(err)
	var memStored int64
	for _, s := range []struct {
		name, kind string
		r          io.Reader
	}{{"memory", bundle.KindMemory, synth.MemoryStream(1, pages)}, {"disk0", bundle.KindDisk, synth.New(2, int64(*diskMB)<<20, true)}} {
		sw, err := bw.Stream(s.name, s.kind)
		check(err)
		_, err = sw.ReadFrom(s.r)
		check(err)
		check(sw.Close())
	}
	ix, err := bw.Finish(&manifest.Manifest{Version: manifest.Version, Kind: "export"}, nil)
	check(err)
	check(out.Sync())
	writeSecs := time.Since(t0).Seconds()
	st, _ := out.Stat()
	out.Close()
	memStored = ix.Stream("memory").StoredSize()
	rssWrite := maxRSS()

	in, err := os.Open(path)
	check(err)
	t0 = time.Now()
	br, err := bundle.Open(in, st.Size(), nil)
	check(err)
	for _, s := range ix.Streams {
		sr, err := br.OpenStream(s.Name)
		check(err)
		_, err = io.Copy(io.Discard, sr)
		check(err)
	}
	readSecs := time.Since(t0).Seconds()
	in.Close()

	mb := func(b float64, s float64) float64 { return b / s / 1e6 }
	fmt.Printf("synthetic capture: %d MiB memory + %d MiB disk (%d MiB)\n", *memMB, *diskMB, total>>20)
	fmt.Printf("baseline  kernel LZO image of the memory: %7.1f MB/s write, %6d MiB on disk (%.3f of the memory)\n", mb(memBytes, lzoSecs), lzoBytes>>20, float64(lzoBytes)/memBytes)
	fmt.Printf("bundle    write %7.1f MB/s (%.2f× baseline), read+verify %7.1f MB/s (%.2f× baseline)\n",
		mb(float64(total), writeSecs), mb(float64(total), writeSecs)/mb(memBytes, lzoSecs), mb(float64(total), readSecs), mb(float64(total), readSecs)/mb(memBytes, lzoSecs))
	fmt.Printf("bundle    %d MiB in all; memory stream %d MiB stored = %.3f of the memory, %.2f× the LZO image\n", st.Size()>>20, memStored>>20, float64(memStored)/memBytes, float64(memStored)/float64(lzoBytes))
	fmt.Printf("peak RSS  %d MiB (after writing: %d MiB)\n", maxRSS()>>20, rssWrite>>20)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundlebench:", err)
		os.Exit(1)
	}
}
