package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/blockdev"
	"github.com/thawlinux/thaw/netfetch/store"
	"github.com/thawlinux/thaw/scripts/harness"
)

// Faults the proxy injects into one answer.
const (
	faultNone        = iota
	faultCut         // forward part of the body, then drop the connection
	faultStall       // pause in the middle of the body, then go on
	faultReset       // drop the connection before any answer
	faultUnavailable // 503
	faultCorrupt     // flip one byte of the body
	faultMisrange    // answer another range than the one asked for
	faultNoRange     // ignore Range: the whole file with 200
	faultTrickle     // a few hundred bytes one at a time, then the rest
	numFaults
)

var faultNames = [numFaults]string{"none", "cut", "stall", "reset", "503", "corrupt", "misrange", "norange", "trickle"}

// faultProxy forwards to a store, injecting one fault per answer as its
// seeded schedule says.
type faultProxy struct {
	upstream string
	mu       sync.Mutex
	rng      *rand.Rand
	seen     []string
}

func (p *faultProxy) next() (int, *rand.Rand) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := faultNone
	if p.rng.IntN(3) != 0 { // two answers in three go wrong
		f = 1 + p.rng.IntN(numFaults-1)
	}
	p.seen = append(p.seen, faultNames[f])
	return f, rand.New(rand.NewPCG(p.rng.Uint64(), 0))
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, rng := p.next()
	if f == faultReset {
		panic(http.ErrAbortHandler)
	}
	if f == faultUnavailable {
		http.Error(w, "injected", http.StatusServiceUnavailable)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.Path, nil)
	for _, h := range []string{"Authorization", "Range", "If-Match", "If-Range", "If-Unmodified-Since"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	if rg := req.Header.Get("Range"); f == faultMisrange && strings.HasPrefix(rg, "bytes=") {
		var a, b int64
		if n, _ := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); n == 2 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a+4096, b+4096))
		}
	}
	if f == faultNoRange {
		req.Header.Del("Range")
		req.Header.Del("If-Range")
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead || len(body) == 0 {
		return
	}
	fl := http.NewResponseController(w)
	switch f {
	case faultCut:
		w.Write(body[:rng.IntN(len(body))])
		fl.Flush()
		panic(http.ErrAbortHandler)
	case faultStall:
		k := rng.IntN(len(body))
		w.Write(body[:k])
		fl.Flush()
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		w.Write(body[k:])
	case faultCorrupt:
		body = bytes.Clone(body)
		body[rng.IntN(len(body))] ^= byte(1 + rng.IntN(255))
		w.Write(body)
	case faultTrickle:
		k := min(len(body), 50+rng.IntN(250))
		for i := 0; i < k; i++ {
			w.Write(body[i : i+1])
			fl.Flush()
			time.Sleep(time.Millisecond)
		}
		w.Write(body[k:])
	default:
		w.Write(body)
	}
}

// T1: thaw restore through a proxy that cuts, stalls, resets, refuses,
// corrupts, answers other ranges, ignores Range and trickles, on 100
// seeded schedules. Every run either completes with the source's disk
// byte for byte, or refuses; none writes a byte that is not the source's,
// and none outlives its deadline.
func TestRestoreUnderTransferFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("100 restores: not in -short")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "src.img")
	if err := harness.MakeGPTDisk(disk, 40, []harness.Part{{Name: "root", SizeMB: 8}, {Name: "swap", SizeMB: 16, Swap: true}}); err != nil {
		t.Fatal(err)
	}
	dev, _ := blockdev.Open(disk+"#1", true)
	rnd := rand.New(rand.NewPCG(9, 9))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rnd.IntN(16)) // compressible, not trivially
	}
	dev.WriteAt(data, 0)
	dev.Close()
	writeImage(t, disk+"#2", 200)
	key := filepath.Join(dir, "k")
	run(t, "keygen", "--out", key)
	enc := filepath.Join(dir, "r")
	run(t, "keygen", "--recipient", "--out", enc)
	storeDir := filepath.Join(dir, "store")
	os.MkdirAll(storeDir, 0o755)
	if out, err := run(t, "export", "--recipient", enc+".recipient", "--from", disk+"#2", "--to", filepath.Join(storeDir, "b.thaw"), "--key", key+".key"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	const readTok = "t1-read"
	tokFile := filepath.Join(dir, "read-token")
	os.WriteFile(tokFile, []byte(readTok), 0o600)
	st, err := store.New(storeDir, store.Options{ReadToken: readTok})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(st)
	defer up.Close()
	src, _ := os.ReadFile(disk)
	swap, _ := blockdev.Open(disk+"#2", false)
	held, swapSig := int(swap.Offset)+4086, "SWAPSPACE2"
	swap.Close()

	const runs = 100
	completed, refused := 0, 0
	for seed := uint64(1); seed <= runs; seed++ {
		p := &faultProxy{upstream: up.URL, rng: rand.New(rand.NewPCG(seed, 42))}
		px := httptest.NewServer(p)
		target := filepath.Join(dir, "target.img")
		initial := bytes.Repeat([]byte{0xa5}, len(src)) // not the source's bytes anywhere that matters
		os.WriteFile(target, initial, 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		cmd := exec.CommandContext(ctx, buildThaw(t), "restore", "--pubkey", key+".pub", "--identity", enc+".identity", "--token-file", tokFile,
			"--image", px.URL+"/b.thaw", "--disk", target)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		px.Close()
		got, _ := os.ReadFile(target)
		switch {
		case timedOut:
			t.Errorf("seed %d: thaw restore outlived its 90 s deadline (faults %v)", seed, p.seen)
		case err == nil:
			completed++
			if !bytes.Equal(got, src) {
				t.Errorf("seed %d: completed, but the disk differs from the source (faults %v)", seed, p.seen)
			}
		default:
			refused++
			for i := range got {
				// The image's resume header is written with the swap
				// signature until the very end: a restore that stops
				// midway leaves it unresumable, as it must.
				if i >= held && i < held+len(swapSig) && got[i] == swapSig[i-held] {
					continue
				}
				if got[i] != initial[i] && got[i] != src[i] {
					t.Errorf("seed %d: refused (%v), and byte %d holds %#x, neither the old %#x nor the source's %#x (faults %v)\n%s",
						seed, err, i, got[i], initial[i], src[i], p.seen, out)
					break
				}
			}
		}
	}
	t.Logf("T1: %d/%d restores completed with the source's disk, %d refused, 0 wrote an unverified byte", completed, runs, refused)
	if completed == 0 {
		t.Error("no restore completed: the retries never got through")
	}
}
