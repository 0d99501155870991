// Command restorebench measures thaw restore against the physical limit,
// with the baseline measured in the same run:
//
//	P1 throughput: thaw restore of a bundle from thaw serve on loopback
//	   to a file, against curl -o of the same bytes followed by dd of them
//	   to a file (conv=fsync). The ratio is baseline time / restore time.
//	P2 memory: the peak RSS of thaw restore of a small and a 4× larger
//	   bundle (memory + disk): flat means the same at both sizes.
//	P3 fleet: one bundle in the store's chunk layout (version 2, uploaded
//	   as a pack), restored by N thaw restore processes at once, against
//	   one restore alone: aggregate throughput / single throughput, every
//	   restore checked against the signed index (exit 0), and the store's log
//	   searched for any answer that is not a success.
//	P4 fleet from S3: P3's bundle in a real S3 server (versitygw, make
//	   s3server), each restore reading it through a presigned list (thaw
//	   presign --out): aggregate / single, every restore verified.
//	P5 follow: thaw restore --follow writes a capture's pre-copy from
//	   thaw serve, then the bundle, whose disk differs in a few per cent
//	   of its chunks; from the moment the bundle is stored to the end of
//	   the restore, against a whole restore of the same bundle: whole /
//	   follow, the part of the downtime the restore sets.
//
// The bundles are synthetic (scripts/bench/bundlebench's page mix: zero,
// random and text-like pages, the disk with long zero regions), plaintext,
// signed. Everything lives in a temporary directory that is removed.
//
//	go run ./scripts/bench/restorebench -p1-disk 2048 -p2-small 512
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/netfetch/s3"
	"github.com/thawlinux/thaw/netfetch/store"
	"github.com/thawlinux/thaw/scripts/bench/synth"
	"github.com/thawlinux/thaw/scripts/harness"
)

func main() {
	p1Disk := flag.Int("p1-disk", 2048, "P1: MiB of disk in the bundle (its memory is 64 MiB): random pages, so the bundle is as large")
	p2Small := flag.Int("p2-small", 512, "P2: MiB of memory and of disk in the small bundle; the large one has 4× as much")
	dir := flag.String("dir", os.TempDir(), "where the temporary files go")
	runs := flag.Int("runs", 2, "P1 runs of each (best of)")
	fleet := flag.Int("p3-fleet", 16, "P3: restores at once (0: no P3)")
	fleetDisk := flag.Int("p3-disk", 256, "P3: MiB of disk in the bundle (its memory is 64 MiB)")
	only := flag.String("only", "", "run only P1, P2, P3, P4 or P5")
	followDisk := flag.Int("p5-disk", 1024, "P5: MiB of disk in the bundle (its memory is 64 MiB)")
	followChange := flag.Int("p5-change", 2, "P5: per cent of the disk's chunks that change between the pre-copy and the bundle")
	thawBin := flag.String("thaw", "", "measure this thaw binary instead of building ./cmd/thaw (an earlier version, for a before/after)")
	flag.Parse()
	work, err := os.MkdirTemp(*dir, "restorebench")
	check(err)
	defer os.RemoveAll(work)
	b := &bench{dir: work, thaw: *thawBin}
	b.setup()
	defer b.stop()

	if *only == "" || *only == "P3" {
		if *fleet > 0 {
			b.fleet(*fleet, *fleetDisk)
		}
		if *only == "P3" {
			return
		}
	}
	if *only == "" || *only == "P5" {
		b.follow(*followDisk, *followChange)
		if *only == "P5" {
			return
		}
	}
	if *only == "" || *only == "P4" {
		if *fleet > 0 {
			b.fleetS3(*fleet, *fleetDisk)
		}
		if *only == "P4" {
			return
		}
	}
	// P1.
	name := b.bundle("p1", 64, *p1Disk, true)
	size := fileSize(filepath.Join(b.store, name))
	var base, rest time.Duration
	var rss int64
	var stages map[string]float64
	for i := 0; i < *runs; i++ {
		bt := b.baseline(name)
		rt, r, st := b.restore(name, 64, *p1Disk)
		if base == 0 || bt < base {
			base = bt
		}
		if rest == 0 || rt < rest {
			rest, rss, stages = rt, r, st
		}
	}
	fmt.Printf("P1 bundle %d MiB (64 MiB memory + %d MiB disk) over loopback:\n", size>>20, *p1Disk)
	fmt.Printf("  baseline curl -o + dd conv=fsync  %6.2f s  %7.1f MB/s\n", base.Seconds(), float64(size)/base.Seconds()/1e6)
	fmt.Printf("  thaw restore                      %6.2f s  %7.1f MB/s  (peak RSS %d MiB)\n", rest.Seconds(), float64(size)/rest.Seconds()/1e6, rss>>20)
	fmt.Printf("  ratio baseline/restore            %6.2f×  (goal ≥ 0.95×)\n", base.Seconds()/rest.Seconds())
	raw := b.rawDisk(*p1Disk)
	disk := b.ddSparse(raw)
	fmt.Printf("  the disk's own bytes: dd conv=fsync,sparse of the %d MiB raw disk  %6.2f s; restore/that %.2f×\n", *p1Disk, disk.Seconds(), disk.Seconds()/rest.Seconds())
	os.Remove(raw)
	fmt.Printf("  restore stages (s): %v\n", stages)
	os.Remove(filepath.Join(b.store, name))

	// P2.
	small := b.bundle("p2s", *p2Small, *p2Small, false)
	_, rs, _ := b.restore(small, *p2Small, *p2Small)
	os.Remove(filepath.Join(b.store, small))
	large := b.bundle("p2l", 4**p2Small, 4**p2Small, false)
	_, rl, _ := b.restore(large, 4**p2Small, 4**p2Small)
	fmt.Printf("P2 peak RSS of thaw restore: %d MiB at %d+%d MiB, %d MiB at %d+%d MiB: ratio %.2f× (goal ≤ 64 MiB, flat: 1.0×)\n",
		rs>>20, *p2Small, *p2Small, rl>>20, 4**p2Small, 4**p2Small, float64(rl)/float64(rs))
}

type bench struct {
	dir, store, thaw, url string
	serveLog              string
	serve                 *exec.Cmd
}

func (b *bench) setup() {
	b.store = filepath.Join(b.dir, "store")
	check(os.MkdirAll(b.store, 0o755))
	if b.thaw == "" {
		b.thaw = filepath.Join(b.dir, "thaw")
		run("go", "build", "-o", b.thaw, "./cmd/thaw")
	}
	run(b.thaw, "keygen", "--out", filepath.Join(b.dir, "k"))
	check(os.WriteFile(filepath.Join(b.dir, "token"), []byte("bench-read-token\n"), 0o600))
	check(os.WriteFile(filepath.Join(b.dir, "write-token"), []byte("bench-write-token\n"), 0o600))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	b.serve = exec.Command(b.thaw, "serve", "--dir", b.store, "--listen", addr, "--read-token-file", filepath.Join(b.dir, "token"), "--token-file", filepath.Join(b.dir, "write-token"))
	b.serveLog = filepath.Join(b.dir, "serve.log")
	lf, err := os.Create(b.serveLog)
	check(err)
	b.serve.Stdout, b.serve.Stderr = lf, lf
	check(b.serve.Start())
	b.url = "http://" + addr
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(fmt.Errorf("thaw serve did not listen on %s", addr))
}

func (b *bench) stop() {
	if b.serve != nil && b.serve.Process != nil {
		b.serve.Process.Kill()
		b.serve.Wait()
	}
}

// bundle writes a signed plaintext bundle of memMB of memory image and
// diskMB of disk into the store; random: the disk does not compress.
func (b *bench) bundle(name string, memMB, diskMB int, random bool) string {
	key, err := bundle.LoadPrivateKey(filepath.Join(b.dir, "k.key"), "")
	check(err)
	name += ".thaw"
	f, err := os.Create(filepath.Join(b.store, name))
	check(err)
	bw := bufio.NewWriterSize(f, 4<<20)
	w, err := bundle.NewWriter(bw, bundle.WriterOptions{})
	check(err)
	writeBench(w, &key, memMB, diskMB, random)
	check(bw.Flush())
	check(f.Close())
	return name
}

// baseline downloads the bundle with curl and writes it to a file with dd.
func (b *bench) baseline(name string) time.Duration {
	dl, out := filepath.Join(b.dir, "dl"), filepath.Join(b.dir, "dd.img")
	dropCaches()
	t0 := time.Now()
	run("curl", "-sfS", "-H", "Authorization: Bearer bench-read-token", "-o", dl, b.url+"/"+name)
	run("dd", "if="+dl, "of="+out, "bs=4M", "conv=fsync", "status=none")
	d := time.Since(t0)
	os.Remove(dl)
	os.Remove(out)
	return d
}

// rawDisk writes the P1 bundle's disk stream as a plain file.
func (b *bench) rawDisk(diskMB int) string {
	p := filepath.Join(b.dir, "raw.img")
	f, err := os.Create(p)
	check(err)
	_, err = io.Copy(f, diskStream(int64(diskMB)<<20, true))
	check(err)
	check(f.Close())
	return p
}

func diskStream(n int64, random bool) io.Reader {
	if random {
		return synth.Random(2, n)
	}
	return synth.New(2, n, true)
}

// ddSparse times dd of a raw disk onto a fresh file, skipping zero blocks
// and syncing: what writing the disk's own bytes costs here.
func (b *bench) ddSparse(raw string) time.Duration {
	out := filepath.Join(b.dir, "dd.img")
	dropCaches()
	t0 := time.Now()
	run("dd", "if="+raw, "of="+out, "bs=4M", "conv=fsync,sparse", "status=none")
	d := time.Since(t0)
	os.Remove(out)
	return d
}

// restore runs thaw restore of the bundle onto a fresh sparse file and a
// swap area, and returns its time, peak RSS and stages.
func (b *bench) restore(name string, memMB, diskMB int) (time.Duration, int64, map[string]float64) {
	return b.restoreTo(name, memMB, diskMB, "")
}

// restoreTo is restore onto target.img+tag, area.img+tag.
func (b *bench) restoreTo(name string, memMB, diskMB int, tag string) (time.Duration, int64, map[string]float64) {
	cmd, clean := b.restoreCmd(name, memMB, diskMB, tag)
	defer clean()
	dropCaches()
	var errb strings.Builder
	cmd.Stderr = &errb
	t0 := time.Now()
	out, err := cmd.Output()
	d := time.Since(t0)
	if err != nil {
		check(fmt.Errorf("thaw restore: %v\n%s\n%s", err, out, errb.String()))
	}
	var res struct {
		Stages map[string]float64 `json:"stage_seconds"`
	}
	check(json.Unmarshal(out, &res))
	return d, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10, res.Stages
}

// restoreCmd is thaw restore of the bundle onto a fresh sparse file and a
// swap area (extra arguments after the others), and what removes them.
func (b *bench) restoreCmd(name string, memMB, diskMB int, tag string, extra ...string) (*exec.Cmd, func()) {
	target, area := filepath.Join(b.dir, "target.img"+tag), filepath.Join(b.dir, "area.img"+tag)
	check(os.WriteFile(target, nil, 0o644))
	check(os.Truncate(target, int64(diskMB)<<20))
	areaPages := uint32(memMB<<8 + memMB<<5 + 4096)
	f, err := os.Create(area)
	check(err)
	check(f.Truncate(int64(areaPages) * 4096))
	check(swsusp.FormatSwap(f, 0, areaPages, [16]byte{2}, "bench"))
	check(f.Close())
	ref := b.url + "/" + name
	if filepath.IsAbs(name) {
		ref = name // a presigned list
	}
	args := append([]string{"restore", "--image", ref, "--pubkey", filepath.Join(b.dir, "k.pub"),
		"--token-file", filepath.Join(b.dir, "token"), "--disk", target, "--resume", area, "--json"}, extra...)
	return exec.CommandContext(context.Background(), b.thaw, args...), func() { os.Remove(target); os.Remove(area) }
}

// dropCaches makes both runs start with a cold page cache where the
// bench may (root); elsewhere both runs see the same warm cache.
func dropCaches() {
	syscall.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	check(err)
	return st.Size()
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		check(fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "restorebench:", err)
		os.Exit(1)
	}
}

// fleet is P3: a version 2 bundle restored by n thaw restores at once.
func (b *bench) fleet(n, diskMB int) {
	name := b.storeBundle("p3", 64, diskMB)
	stored := storedSize(b.store)
	one, all, failed := b.restoreFleet(name, n, diskMB, "")
	logb, _ := os.ReadFile(b.serveLog)
	bad := 0
	for _, l := range strings.Split(string(logb), "\n") {
		f := strings.Fields(l)
		// DATE TIME ADDR METHOD PATH STATUS …
		if len(f) >= 6 && (f[3] == "GET" || f[3] == "HEAD") && !strings.HasPrefix(f[5], "2") {
			bad++
		}
	}
	single := float64(stored) / one.Seconds() / 1e6
	agg := float64(n) * float64(stored) / all.Seconds() / 1e6
	fmt.Printf("P3 fleet: a %d MiB version 2 bundle (64 MiB memory + %d MiB disk, in %s's chunk layout) from one thaw serve on loopback:\n", stored>>20, diskMB, "thaw serve")
	fmt.Printf("  one restore                %6.2f s  %7.1f MB/s\n", one.Seconds(), single)
	fmt.Printf("  %2d restores at once        %6.2f s  %7.1f MB/s aggregate\n", n, all.Seconds(), agg)
	fmt.Printf("  ratio aggregate/single     %6.2f×  (goal ≥ 0.9×); %d of %d restores failed; %d store answers not 2xx\n", agg/single, failed, n, bad)
}

// restoreFleet restores image once alone, then n times at once: the time
// of each, and how many of the n failed.
func (b *bench) restoreFleet(image string, n, diskMB int, tag string) (one, all time.Duration, failed int) {
	one, _, _ = b.restoreTo(image, 64, diskMB, tag+".single")
	errs := make(chan error, n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func(i int) {
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("restore %d: %v", i, r)
				}
			}()
			b.restoreTo(image, 64, diskMB, fmt.Sprintf("%s.%d", tag, i))
			errs <- nil
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			failed++
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return one, time.Since(t0), failed
}

// fleetS3 is P4: P3 with the bundle in versitygw, read through a
// presigned list.
func (b *bench) fleetS3(n, diskMB int) {
	log, err := os.Create(filepath.Join(b.dir, "s3.log"))
	check(err)
	srv, err := harness.StartS3(harness.S3Options{Root: filepath.Join(b.dir, "s3"), Log: log, KeepAlive: true, Buckets: []string{"bench"}})
	check(err)
	defer srv.Stop()
	c, err := srv.Client()
	check(err)
	o, err := s3.Parse("s3://bench/fleet/p4.thaw", "")
	check(err)
	key, err := bundle.LoadPrivateKey(filepath.Join(b.dir, "k.key"), "")
	check(err)
	up := s3.NewUploader(context.Background(), c, o, 4)
	w, err := bundle.NewWriter(nil, bundle.WriterOptions{Store: &bundle.StoreOptions{Records: up}})
	check(err)
	writeBench(w, &key, 64, diskMB, false)
	check(up.Wait())
	stored := storedSize(srv.Root)
	list := filepath.Join(b.dir, "p4.presigned")
	cmd := exec.Command(b.thaw, "presign", "--out", list, o.String())
	cmd.Env = append(os.Environ(), srv.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		check(fmt.Errorf("thaw presign: %v %s", err, out))
	}
	one, all, failed := b.restoreFleet(list, n, diskMB, ".s3")
	single := float64(stored) / one.Seconds() / 1e6
	agg := float64(n) * float64(stored) / all.Seconds() / 1e6
	fmt.Printf("P4 fleet from S3: the same kind of bundle, %d MiB, in versitygw on loopback, read through a presigned list:\n", stored>>20)
	fmt.Printf("  one restore                %6.2f s  %7.1f MB/s\n", one.Seconds(), single)
	fmt.Printf("  %2d restores at once        %6.2f s  %7.1f MB/s aggregate\n", n, all.Seconds(), agg)
	fmt.Printf("  ratio aggregate/single     %6.2f×  (goal ≥ 0.9×); %d of %d restores failed\n", agg/single, failed, n)
}

// storeBundle writes a signed plaintext version 2 bundle and uploads it
// to the store as a pack (thaw serve unpacks it into its chunks).
func (b *bench) storeBundle(name string, memMB, diskMB int) string {
	key, err := bundle.LoadPrivateKey(filepath.Join(b.dir, "k.key"), "")
	check(err)
	name += ".thaw"
	b.putPack(name, bundle.WriterOptions{Store: &bundle.StoreOptions{}}, func(w *bundle.Writer) { writeBench(w, &key, memMB, diskMB, false) })
	return name
}

// putPack uploads to the store as name the pack that write writes with a
// Writer made with opt.
func (b *bench) putPack(name string, opt bundle.WriterOptions, write func(*bundle.Writer)) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPut, b.url+"/"+name, pr)
		if err == nil {
			req.Header.Set("Authorization", "Bearer bench-write-token")
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("PUT %s: %s", name, resp.Status)
				}
			}
		}
		pr.CloseWithError(err)
		done <- err
	}()
	w, err := bundle.NewWriter(pw, opt)
	check(err)
	write(w)
	pw.Close()
	check(<-done)
}

// writeBench writes the synthetic memory image and disk, and a manifest
// that names them, and signs the bundle.
func writeBench(w *bundle.Writer, key *minisign.PrivateKey, memMB, diskMB int, random bool) {
	writeStreams(w, key, memMB, diskMB, diskStream(int64(diskMB)<<20, random))
}

// writeStreams is writeBench with the disk's bytes from disk; memMB 0
// writes the disk alone, with no memory image (a pre-copy).
func writeStreams(w *bundle.Writer, key *minisign.PrivateKey, memMB, diskMB int, disk io.Reader) {
	pages := memMB << 8
	type stream struct {
		name, kind string
		r          io.Reader
	}
	streams := []stream{{"disk0", bundle.KindDisk, disk}}
	if memMB > 0 {
		streams = append([]stream{{"memory", bundle.KindMemory, synth.MemoryStream(1, pages)}}, streams...)
	}
	for _, s := range streams {
		sw, err := w.Stream(s.name, s.kind)
		check(err)
		_, err = sw.ReadFrom(s.r)
		check(err)
		check(sw.Close())
	}
	meta := (pages*8 + 4095) / 4096
	m := &manifest.Manifest{Version: manifest.Version, Kind: "capture", Kernel: manifest.Kernel{Release: "bench"},
		Disks: []manifest.Disk{{Name: "vda", Size: int64(diskMB) << 20, Stream: "disk0"}}}
	if memMB > 0 {
		m.Image = &manifest.Image{Release: "bench", Pages: uint64(1 + meta + pages), DataPages: uint64(pages), Stream: "memory"}
	}
	_, err := w.Finish(m, key)
	check(err)
}

// follow is P5: a restore that followed a capture, against a whole
// restore of its bundle.
func (b *bench) follow(diskMB, changePct int) {
	key, err := bundle.LoadPrivateKey(filepath.Join(b.dir, "k.key"), "")
	check(err)
	disk := make([]byte, diskMB<<20)
	_, err = io.ReadFull(diskStream(int64(diskMB)<<20, false), disk)
	check(err)
	const id, name = "00000000000000f5", "p5.thaw"
	// The pre-copy: the disk while the source ran.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := store.Precopy(context.Background(), http.DefaultClient, b.url+"/"+name, "bench-write-token", pr)
		pr.CloseWithError(err)
		done <- err
	}()
	w, err := bundle.NewWriter(pw, bundle.WriterOptions{ID: id, Precopy: true, Store: &bundle.StoreOptions{}})
	check(err)
	writeStreams(w, &key, 0, diskMB, bytes.NewReader(disk))
	pw.Close()
	check(<-done)
	// The disk at the freeze: a block written in changePct % of its
	// chunks.
	changed := 0
	if changePct > 0 {
		for off := 0; off < len(disk); off += (100 / changePct) * bundle.DefaultStoreChunkSize {
			copy(disk[off+4096:], bytes.Repeat([]byte("written after the pre-copy "), 2048))
			changed++
		}
	}

	cmd, clean := b.restoreCmd(name, 64, diskMB, ".follow", "--follow")
	defer clean()
	stderr, err := cmd.StderrPipe()
	check(err)
	var out strings.Builder
	cmd.Stdout = &out
	check(cmd.Start())
	waiting := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), `"event":"begin","stage":"follow"`) {
				seen = true
				close(waiting)
			}
		}
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Minute):
		check(fmt.Errorf("P5: thaw restore --follow did not write the pre-copy"))
	}
	// The bundle lands: from here on is the restore's part of the downtime.
	b.putPack(name, bundle.WriterOptions{ID: id, Store: &bundle.StoreOptions{}}, func(w *bundle.Writer) {
		writeStreams(w, &key, 64, diskMB, bytes.NewReader(disk))
	})
	t0 := time.Now()
	check(cmd.Wait())
	followed := time.Since(t0)
	var res struct {
		Disks []struct {
			Written int64 `json:"written_bytes"`
			Kept    int64 `json:"kept_bytes"`
		} `json:"disks"`
	}
	check(json.Unmarshal([]byte(out.String()), &res))
	if len(res.Disks) != 1 || res.Disks[0].Kept == 0 {
		check(fmt.Errorf("P5: the followed restore kept nothing of its pre-copy: %s", out.String()))
	}
	whole, _, _ := b.restoreTo(name, 64, diskMB, ".whole")
	fmt.Printf("P5 follow: 64 MiB memory + %d MiB disk, %d of %d disk chunks changed after the pre-copy, from thaw serve on loopback:\n", diskMB, changed, (diskMB<<20)/bundle.DefaultStoreChunkSize)
	fmt.Printf("  whole restore of the bundle          %6.2f s\n", whole.Seconds())
	fmt.Printf("  follow: from the bundle stored to done %6.2f s  (%d MiB written, %d MiB kept from the pre-copy)\n", followed.Seconds(), res.Disks[0].Written>>20, res.Disks[0].Kept>>20)
	fmt.Printf("  ratio whole/follow                   %6.2f×\n", whole.Seconds()/followed.Seconds())
}

// storedSize is the bytes of the files under a store's directory, its
// logs left out.
func storedSize(root string) int64 {
	var n int64
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasSuffix(p, ".log") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
