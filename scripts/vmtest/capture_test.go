//go:build vm

package vmtest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/harness"
)

// toolsDisk is a raw disk holding a tar of files the guest extracts with
// `tar -x -f /dev/vdc`.
func toolsDisk(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	for b.Len()%(1<<20) != 0 {
		b.WriteByte(0)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readToken is the read token of every thaw serve the tests start: the
// agents get it as thaw.token=, the host's thaw commands in a file.
const readToken = "r3ad-t0ken-for-the-agents"

// readTokenFile is a file holding readToken.
func readTokenFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "read-token")
	if err := os.WriteFile(p, []byte(readToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServe runs thaw serve on a free loopback port for the test's
// duration, its log in logDir/NAME-serve.log, and returns the port. Reads
// need readToken; /boot/ (the agent's files for iPXE) is public.
func startServe(t *testing.T, name, store string, args ...string) int {
	port := freePort(t)
	startServeAt(t, nil, "127.0.0.1", port, name, store, args...)
	return port
}

// startServeAt runs thaw serve on host:port, through wrap (ip netns exec NS),
// until the test ends; a test may kill it sooner.
func startServeAt(t *testing.T, wrap []string, host string, port int, name, store string, args ...string) *exec.Cmd {
	t.Helper()
	srvArgs := append([]string{"serve", "--dir", store, "--listen", fmt.Sprintf("%s:%d", host, port),
		"--read-token-file", readTokenFile(t), "--public", "/boot/"}, args...)
	t.Logf("host$ %sthaw %s", strings.Join(append(slices.Clone(wrap), ""), " "), strings.Join(srvArgs, " "))
	argv := append(append(slices.Clone(wrap), thawBin), srvArgs...)
	srv := exec.Command(argv[0], argv[1:]...)
	srvLog, err := os.Create(filepath.Join(logDir, name+"-serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait(); srvLog.Close() })
	return srv
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServerCapture: thaw capture runs inside the real server (root on LVM,
// swap active with pages swapped out by memory pressure, workload running) and
// streams a signed bundle into thaw serve on the host's loopback; the
// bundle verifies, every mailbox PFN appears once in the snapshot with its
// marker; thaw restore writes fresh disks from the bundle URL; identical
// hardware boots the server's kernel and initrd with resume= and the capture
// process resumes, finds its mailbox intact and exits; the workload carries
// on, the swapped-out data is intact, fsck is clean.
//
// The captures the parallel cases share (trixie on OVMF, the plain
// Debian 13 server, the Debian 12 one) are made here too, as subtests run
// from goroutines, two machines at a time: the cores stay busy, and no
// parallel case then holds one of its two slots waiting for another to
// finish a capture. The longest (trixie, with its restore, and Debian 12,
// whose kernel's image preallocation is slow under TCG) start first.
func TestServerCapture(t *testing.T) {
	subs := []struct {
		name string
		f    func(*testing.T)
	}{
		{"trixie", testServerCapture},
		{"bookworm", func(t *testing.T) { needCapturedSuite(t, "bookworm") }},
		{"trixie-uefi", func(t *testing.T) { needCapturedSuite(t, "trixie-uefi") }},
		{"plain", func(t *testing.T) { needCapturedSuite(t, "plain") }},
	}
	slots := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			t.Run(sub.name, sub.f)
		}()
	}
	wg.Wait()
}

func testServerCapture(t *testing.T) {
	s, err := harness.LoadServer()
	if err != nil {
		t.Fatal(err)
	}
	c, port, disk, blank := captureServer(t, s, "capture")
	captured = keep(t, c)
	h, blobSum, tools, bundlePath, pub := c.h, c.blobSum, c.tools, c.bundle, c.pub
	dir := t.TempDir()
	if out, err := thaw(t, "inspect", "--pubkey", pub, fmt.Sprintf("http://127.0.0.1:%d/server.thaw", port)); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("inspect of the captured bundle over HTTP without the read token: %v %s", err, out)
	}
	if out, err := thaw(t, "inspect", "--pubkey", pub, "--identity", c.identity, "--token-file", readTokenFile(t), fmt.Sprintf("http://127.0.0.1:%d/server.thaw", port)); err != nil || !strings.Contains(string(out), "encrypted, decrypted") {
		t.Fatalf("inspect of the captured bundle over HTTP: %v %s", err, out)
	}
	checkMailboxInStream(t, bundlePath, pub, c.identity)
	timing := func(stage string, since time.Time) { t.Logf("TIMING %-34s %6.1fs", stage, time.Since(since).Seconds()) }

	target := emptyDiskLike(t, filepath.Join(dir, "target.img"), disk)
	// The image's swap (the swap LV) holds swapped-out pages: the resume
	// image goes into the pages the capture reserved in it, on the
	// restored disk, and nothing else is needed.
	start := time.Now()
	cmdline := restoreTo(t, fmt.Sprintf("http://127.0.0.1:%d/server.thaw", port), pub, target, s.Cmdline, "--token-file", readTokenFile(t), "--identity", c.identity)
	if !strings.Contains(cmdline, "resume=/dev/mapper/vg0-swap") {
		t.Fatalf("the restore did not put the image into the swap LV: %s", cmdline)
	}
	timing("restore over HTTP (verify + write)", start)
	start = time.Now()
	vm2 := serverVMWith(t, s, "capture-restored", cmdline, target, blank, tools)
	defer failWithConsole(t, vm2)
	if _, _, err := vm2.WaitFor(resumedRE, 0, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm2.WaitFor(regexp.MustCompile(`thaw capture \[[ 0-9.]+s\]: machine thawed; exiting`), 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	timing("boot + kernel resume → unfrozen", start)
	out3, status, err := vm2.Run("md5sum </mnt/p/blob; swapon --show=NAME --noheadings", 2*time.Minute)
	if err != nil || status != 0 || !strings.Contains(out3, blobSum) || !strings.Contains(out3, "/dev/dm-") {
		t.Fatalf("after resume: blob and swap %q (want md5 %s and the swap LV active): %v %d", out3, blobSum, err, status)
	}
	checkResumed(t, vm2, h)
	fsckRoot(t, target)
}

// captureServer boots a server guest, puts memory pressure on it (a blob
// pushed to swap), and captures it with thaw capture into thaw serve.
func captureServer(t *testing.T, s *harness.Server, name string) (c *capturedServer, port int, disk, blank string) {
	return captureServerOn(t, s, name, "", captureOpts{})
}

// TestCaptureSourceFaults is T3 on a source of its own (sourceFaults): two
// captures that fail while the machine is frozen, and no capture after
// them.
func TestCaptureSourceFaults(t *testing.T) {
	t.Parallel()
	s, err := harness.LoadServer()
	if err != nil {
		t.Fatal(err)
	}
	captureServerOn(t, s, "t3", "", captureOpts{faults: true})
}

// captureOpts vary a capture.
type captureOpts struct {
	// secure: thaw serve listens with a test CA's certificate and
	// capture uploads over https (--ca-file), TLS going on while the
	// source is frozen; else over plain http with a one-use token (thaw
	// grant), where capture must warn that the token crosses in clear.
	secure bool
	// before runs in the source once its services are up, before the
	// memory pressure and the capture.
	before func(*harness.VM)
	// faults: only the source faults of T3 (sourceFaults), and no
	// capture: the results are zero.
	faults bool
	// precopy: capture --precopy (at most 64 MiB/s read from the disks).
	precopy bool
	// s3: into a real S3 server (versitygw, over https with a test CA)
	// instead of thaw serve: s3://images/lab/server.thaw.
	s3 bool
	// maxCPUs > 1: the source runs one CPU with room for maxCPUs
	// (QEMU -smp 1,maxcpus=N), which a target with more can bring online.
	maxCPUs int
}

// captureServerWith is captureServer; before runs in the source once its
// services are up, before the memory pressure and the capture.
func captureServerWith(t *testing.T, s *harness.Server, name string, before func(*harness.VM)) (c *capturedServer, port int, disk, blank string) {
	return captureServerOn(t, s, name, "", captureOpts{before: before})
}

// captureServerOn captures on a firmware: "" for SeaBIOS, ovmf for UEFI.
func captureServerOn(t *testing.T, s *harness.Server, name, firmware string, opt captureOpts) (c *capturedServer, port int, disk, blank string) {
	secure, before := opt.secure, opt.before
	t.Helper()
	dir := t.TempDir()
	if _, err := thaw(t, "keygen", "--out", filepath.Join(dir, "k")); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("s3cret-token\n"), 0o600)
	store := filepath.Join(dir, "store")
	os.MkdirAll(store, 0o755)
	serveArgs := []string{"--token-file", token}
	toolFiles := map[string]string{"thaw": thawBin, "k.key": filepath.Join(dir, "k.key"), "token": token, "r.recipient": filepath.Join(dir, "r.recipient"), "fleet.chunkkey": fleetChunkKey(t)}
	scheme, caArg := "http", ""
	if secure {
		ca, cert, key := testCA(t)
		serveArgs = append(serveArgs, "--tls-cert", cert, "--tls-key", key)
		toolFiles["ca.pem"] = ca
		scheme, caArg = "https", " --ca-file /mnt/t/ca.pem"
	}
	bundlePath := filepath.Join(store, "server.thaw")
	var s3Env string
	if opt.s3 {
		// The store's directory is the S3 server's: bucket images,
		// prefix lab/.
		ca, cert, key := testCA(t)
		toolFiles["ca.pem"] = ca
		caArg = " --ca-file /mnt/t/ca.pem"
		srv := startS3(t, name, store, cert, key)
		port = srv.Port
		s3Env = fmt.Sprintf("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s ", srv.AccessKey, srv.SecretKey)
		bundlePath = filepath.Join(store, "images", "lab", "server.thaw")
	} else {
		port = startServe(t, name, store, serveArgs...)
	}
	if !secure && !opt.s3 {
		// Over plain http the source gets a one-use token for its one
		// bundle, not the store's write token (thaw grant).
		grant := filepath.Join(dir, "grant")
		var out []byte
		var err error
		for range 50 {
			if out, err = thaw(t, "grant", "--token-file", token, "--ttl", "2h", "--out", grant, fmt.Sprintf("http://127.0.0.1:%d/server.thaw", port)); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("thaw grant: %v %s", err, out)
		}
		toolFiles["token"] = grant
	}

	if _, err := thaw(t, "keygen", "--recipient", "--out", filepath.Join(dir, "r")); err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(dir, "tools.img")
	toolsDisk(t, tools, toolFiles)
	disk = filepath.Join(dir, "server.img")
	copyFile(t, s.Disk, disk)
	blank = blankDisk(t, dir)

	vm := serverVMCPUs(t, s, name+"-source", s.Cmdline, firmware, opt.maxCPUs, disk, blank, tools)
	vm.SetTimeout(20 * time.Minute)
	defer failWithConsole(t, vm)
	m, _, err := vm.WaitFor(workloadRE, 0, 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h := &hibernatedServer{s: s, secret: m[2]}
	rm, _, err := vm.WaitFor(redisRE, 0, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(vm)
	}
	// The fleet's chunk key goes where capture looks for this server's
	// own, as an operator would install it: the servers of one run share
	// their equal chunks. The S3 capture makes its own instead.
	fleetKey := "mkdir -p /var/lib/thaw && install -m 600 /mnt/t/fleet.chunkkey /var/lib/thaw/chunk.key; "
	if opt.s3 {
		fleetKey = ""
	}
	// Memory pressure: a 64 MiB blob in tmpfs, pushed to swap by a
	// transient 420 MiB file; the blob's hash is checked after resume.
	prep := "mkdir -p /mnt/t && mount -t tmpfs -o size=64m tmpfs /mnt/t && tar -x -f /dev/vdc -C /mnt/t && mkdir -p /mnt/p && mount -t tmpfs -o size=600m tmpfs /mnt/p && " +
		"head -c 67108864 /dev/urandom >/mnt/p/blob && md5sum </mnt/p/blob >/mnt/t/blob.md5 && " +
		"(head -c 440401920 /dev/zero >/mnt/p/hog; rm -f /mnt/p/hog) && " +
		"for i in $(seq 60); do ip -4 addr | grep -q 10.0.2.15 && break; sleep 1; done; " + fleetKey +
		"cat /mnt/t/blob.md5; md5sum </sys/firmware/acpi/tables/DSDT; awk '/SwapTotal|SwapFree/ {print $1, $2}' /proc/meminfo"
	out, status, err := vm.Run(prep, 4*time.Minute)
	if err != nil || status != 0 {
		t.Fatalf("guest preparation: %v %d %s", err, status, out)
	}
	blobSum, dsdtSum := strings.Fields(out)[0], strings.Fields(out)[2]
	var total, free int
	fmt.Sscanf(out[strings.Index(out, "SwapTotal:"):], "SwapTotal: %d\nSwapFree: %d", &total, &free)
	t.Logf("before capture: blob md5 %s, swap used %d MiB", blobSum, (total-free)>>10)
	if total-free < 8<<10 {
		t.Errorf("memory pressure swapped out only %d KiB", total-free)
	}
	h.last = lastCounter(vm.Console(), h.secret)
	url := fmt.Sprintf("%s://10.0.2.2:%d/server.thaw", scheme, port)
	capArgs := " --to " + url + " --key /mnt/t/k.key --recipient /mnt/t/r.recipient --token-file /mnt/t/token --disks /dev/vda" + caArg
	if opt.s3 {
		url = "s3://images/lab/server.thaw"
		capArgs = fmt.Sprintf(" --to %s --s3-endpoint https://10.0.2.2:%d --key /mnt/t/k.key --recipient /mnt/t/r.recipient --disks /dev/vda%s", url, port, caArg)
	}
	dry, status, err := vm.Run("timeout 120 env "+s3Env+"/mnt/t/thaw capture --dry-run"+capArgs+" 2>&1", 3*time.Minute)
	t.Logf("capture --dry-run (status %d): %s", status, dry)
	if err != nil || status != 0 || !strings.Contains(dry, "dry run") {
		t.Fatalf("capture --dry-run: %v %d", err, status)
	}
	if opt.faults {
		sourceFaults(t, vm, h, name, strings.Replace(capArgs, " --to "+url, "", 1), toolFiles["token"])
		return nil, 0, "", ""
	}
	if opt.precopy {
		capArgs += " --precopy --rate 64"
	}
	t.Logf("server# thaw capture%s", capArgs)
	from := len(vm.Console())
	if _, status, err := vm.Run("(env "+s3Env+"/mnt/t/thaw capture"+capArgs+" >/dev/console 2>&1 &)", time.Minute); err != nil || status != 0 {
		t.Fatalf("start capture: %v %d", err, status)
	}
	start := time.Now()
	// A capture that fails thaws the machine and says so: the test stops
	// there rather than wait for a power-off that never comes.
	m, _, err = vm.WaitFor(regexp.MustCompile(`thaw capture \[[ 0-9.]+s\]: (aborted, machine thawed.*|.*powering off)`), from, 15*time.Minute)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if strings.Contains(m[0], "aborted") {
		t.Fatalf("capture failed: %s", m[0])
	}
	if warned := strings.Contains(vm.Console(), "the token crosses the network in clear"); warned == secure {
		t.Errorf("over %s, capture warned of a token in clear: %v", scheme, warned)
	}
	if !secure && !opt.s3 {
		if b, _ := os.ReadFile(filepath.Join(logDir, name+"-serve.log")); !strings.Contains(string(b), "one-use token for /server.thaw used and revoked") {
			t.Errorf("thaw serve did not revoke the one-use token:\n%s", b)
		}
	}
	if err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("capture: %v", err)
	}
	console := vm.Console()
	if f, ok := frozenTime(console[from:]); ok {
		t.Logf("TIMING %-34s %6.1fs", name+" (frozen: freeze → complete)", f)
	}
	if opt.precopy && !strings.Contains(console[from:], "pre-copy done") {
		t.Error("capture --precopy did not pre-copy")
	}
	if !strings.Contains(console, "powering off") {
		t.Fatalf("capture did not complete")
	}
	h.last = lastCounter(console, h.secret)
	t.Logf("captured at counter %d in %.0fs", h.last, time.Since(start).Seconds())
	t.Logf("TIMING %-34s %6.1fs", name+" (freeze → power off)", time.Since(start).Seconds())

	c = &capturedServer{s: s, h: h, blobSum: blobSum, dsdtSum: dsdtSum, tools: tools, redis: rm[1],
		bundle: bundlePath, pub: filepath.Join(dir, "k.pub"), key: filepath.Join(dir, "k.key"), identity: filepath.Join(dir, "r.identity"),
		frozenToOff: time.Since(start).Seconds()}
	// Encrypted: what lived only in the server's RAM appears in no stored
	// byte.
	// Every file of the store: the bundle object and its chunks.
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{c.redis, h.secret} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("the RAM-only value %s is in the store's %s", secret, p)
			}
		}
		return nil
	})
	return c, port, disk, blank
}

var fleetKey struct {
	sync.Once
	path string
	err  error
}

// fleetChunkKey is one chunk key (thaw keygen --chunk-key) for every
// capture of this run: a fleet's.
func fleetChunkKey(t *testing.T) string {
	t.Helper()
	fleetKey.Do(func() {
		dir, err := os.MkdirTemp("", "thaw-vmtest-fleet")
		if err != nil {
			fleetKey.err = err
			return
		}
		fleetKey.path = filepath.Join(dir, "fleet.chunkkey")
		_, fleetKey.err = thaw(t, "keygen", "--chunk-key", "--out", filepath.Join(dir, "fleet"))
	})
	if fleetKey.err != nil {
		t.Fatal(fleetKey.err)
	}
	return fleetKey.path
}

// startS3 runs versitygw over https on dir (bucket images), its log in
// logDir/NAME-s3.log.
func startS3(t *testing.T, name, dir, cert, key string) *harness.S3Server {
	t.Helper()
	log, err := os.Create(filepath.Join(logDir, name+"-s3.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	srv, err := harness.StartS3(harness.S3Options{Root: dir, Port: freePort(t), Cert: cert, Key: key, Log: log, KeepAlive: true, Buckets: []string{"images"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// captured is TestServerCapture's bundle, kept for the tests after it.
var captured *capturedServer

type capturedServer struct {
	s                  *harness.Server
	bundle, pub, tools string
	key                string // the secret key that signed the bundle
	identity           string // decrypts the bundle
	h                  *hibernatedServer
	blobSum            string
	dsdtSum            string // md5 of the source's DSDT
	redis              string // thaw:secret in the source's redis, in RAM only
	// frozenToOff is the capture's seconds from its start to the power
	// off, when this run made it (0 for a kept one).
	frozenToOff float64
}

// redisRE is the value redis-seed printed: always 32 hex digits, so the
// match waits for all of it (the console arrives in pieces) without
// needing the line's end, which a kernel message may cut off.
var redisRE = regexp.MustCompile(`REDIS: thaw:secret=([0-9a-f]{32})`)

// keep links the capture into $TMPDIR/thaw-vmtest-captured for
// needCaptured.
func keep(t *testing.T, c *capturedServer) *capturedServer { return keepSuite(t, c, "trixie") }

// keptDir is where a suite's capture is kept for later runs.
func keptDir(suite string) string {
	name := "thaw-vmtest-captured"
	if suite != "trixie" {
		name += "-" + suite
	}
	return filepath.Join(os.TempDir(), name)
}

func keepSuite(t *testing.T, c *capturedServer, suite string) *capturedServer {
	dir := keptDir(suite)
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	kept := *c
	for _, f := range []*string{&kept.bundle, &kept.pub, &kept.key, &kept.tools, &kept.identity} {
		dst := filepath.Join(dir, filepath.Base(*f))
		if f == &kept.bundle {
			linkBundle(t, *f, dst)
		} else if err := os.Link(*f, dst); err != nil {
			copyFile(t, *f, dst)
		}
		*f = dst
	}
	st, _ := json.Marshal(capturedState{Secret: c.h.secret, Last: c.h.last, BlobSum: c.blobSum, DSDTSum: c.dsdtSum, Redis: c.redis})
	os.WriteFile(filepath.Join(dir, "state.json"), st, 0o644)
	return &kept
}

// capturedState is what a later run needs of a kept capture.
type capturedState struct {
	Secret, BlobSum, DSDTSum, Redis string
	Last                            int
}

// needCaptured returns TestServerCapture's bundle. While working on the
// restore side, THAW_VMTEST_REUSE_CAPTURE=1 with -run selecting only the
// later tests takes the capture a previous run kept in
// $TMPDIR/thaw-vmtest-captured instead of failing; make test never sets it.
func needCaptured(t *testing.T) *capturedServer {
	t.Helper()
	if captured != nil {
		return captured
	}
	if os.Getenv("THAW_VMTEST_REUSE_CAPTURE") != "1" {
		t.Fatal("needs the bundle of TestServerCapture (run both)")
	}
	captured = loadKept(t, "trixie")
	return captured
}

// loadKept loads the capture a previous run kept for a suite.
func loadKept(t *testing.T, suite string) *capturedServer {
	t.Helper()
	dir := keptDir(suite)
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatalf("no kept capture: %v", err)
	}
	var st capturedState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	distro, _ := strings.CutSuffix(suite, "-uefi")
	s, err := harness.LoadServerSuite(distro)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reusing the capture kept in %s", dir)
	return &capturedServer{s: s, bundle: filepath.Join(dir, "server.thaw"), pub: filepath.Join(dir, "k.pub"), key: filepath.Join(dir, "k.key"), tools: filepath.Join(dir, "tools.img"), identity: filepath.Join(dir, "r.identity"),
		h: &hibernatedServer{s: s, secret: st.Secret, last: st.Last}, blobSum: st.BlobSum, dsdtSum: st.DSDTSum, redis: st.Redis}
}

// capturedSuites holds one capture per other server suite, made by the
// first test that needs it and shared by the others.
var (
	capturedSuites   = map[string]*capturedSuite{}
	capturedSuitesMu sync.Mutex // guards the map only
)

// capturedSuite is one suite's capture, made once: its own lock is held
// while it is made, so that a test needing another suite does not wait.
type capturedSuite struct {
	mu sync.Mutex
	c  *capturedServer
}

// needCapturedSuite returns the shared capture of a suite's server
// (bookworm), capturing it on first use.
func needCapturedSuite(t *testing.T, suite string) *capturedServer {
	t.Helper()
	capturedSuitesMu.Lock()
	cs := capturedSuites[suite]
	if cs == nil {
		cs = &capturedSuite{}
		capturedSuites[suite] = cs
	}
	capturedSuitesMu.Unlock()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.c != nil {
		return cs.c
	}
	if os.Getenv("THAW_VMTEST_REUSE_CAPTURE") == "1" {
		if _, err := os.Stat(filepath.Join(keptDir(suite), "state.json")); err == nil {
			cs.c = loadKept(t, suite)
			return cs.c
		}
	}
	// SUITE-uefi: the suite's server captured on OVMF.
	distro, uefi := strings.CutSuffix(suite, "-uefi")
	s, err := harness.LoadServerSuite(distro)
	if err != nil {
		t.Fatal(err)
	}
	firmware := ""
	if uefi {
		firmware = ovmf
	}
	// Over https: the suites' bundles are read from the store's
	// directory, and TLS in the frozen phase is proven on both firmwares.
	// Debian 12's and the plain Debian 13 source run with QEMU's room for
	// a second CPU: E10 brings it online on 6.1; on 6.12 under TCG the
	// kernel does not count it, and E13's plan says why.
	// The OVMF capture pre-copies its disk: its frozen time against the
	// shared capture's, of the same server, is the pre-copy's gain.
	// It goes into a real S3 server, which S1 restores from (U0).
	opt := captureOpts{secure: true, precopy: uefi, s3: uefi}
	if suite == "bookworm" || suite == "plain" {
		opt.maxCPUs = 2
	}
	c, _, _, _ := captureServerOn(t, s, suite+"-capture", firmware, opt)
	cs.c = keepSuite(t, c, suite)
	return cs.c
}

// checkMailboxInStream: every mailbox PFN of the manifest appears exactly
// once in the memory stream as a data page carrying its marker.
func checkMailboxInStream(t *testing.T, path, pubPath, identity string) {
	t.Helper()
	pub, err := bundle.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	br, err := bundle.Open(f, st.Size(), &pub)
	if err != nil {
		t.Fatal(err)
	}
	br.SetChunkSource(bundle.DirSource(filepath.Dir(path)))
	ids, err := bundle.LoadIdentities(identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Unlock(ids...); err != nil {
		t.Fatal(err)
	}
	mb := br.Manifest.Mailbox
	if mb == nil || len(mb.PFNs) == 0 {
		t.Fatal("the manifest records no mailbox")
	}
	nonce, _ := hex.DecodeString(mb.Nonce)
	want := map[uint64]int{}
	for i, p := range mb.PFNs {
		want[p] = i
	}
	sr, err := br.OpenStream("memory")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := swsusp.NewStreamReader(sr)
	if err != nil {
		t.Fatal(err)
	}
	if im := br.Manifest.Image; im == nil || im.ZeroPages != ss.ZeroPages || im.DataPages != ss.Info.ImagePages || im.Pages != ss.Info.Pages {
		t.Errorf("manifest image %+v; the stream has %d pages, %d data, %d zero", im, ss.Info.Pages, ss.Info.ImagePages, ss.ZeroPages)
	}
	seen := map[uint64]bool{}
	for {
		p, err := ss.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		idx, ok := want[p.PFN]
		if !ok {
			continue
		}
		if seen[p.PFN] || p.Zero {
			t.Fatalf("mailbox PFN %#x: seen twice or stored as a zero page", p.PFN)
		}
		seen[p.PFN] = true
		if !bytes.HasPrefix(p.Data, []byte("THAWMBOX")) || !bytes.Equal(p.Data[8:24], nonce) || binary.LittleEndian.Uint32(p.Data[24:]) != uint32(idx) {
			t.Fatalf("mailbox PFN %#x (page %d) does not carry its marker", p.PFN, idx)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d mailbox PFNs in the snapshot", len(seen), len(want))
	}
	t.Logf("mailbox: all %d PFNs in the snapshot once, with their marker", len(want))
}

// frozenTime is how long a capture's machine stayed frozen, from its
// console: "freezing" to "bundle complete".
func frozenTime(console string) (float64, bool) {
	at := func(what string) (float64, bool) {
		m := regexp.MustCompile(`thaw capture \[ *([0-9.]+)s\]: ` + what).FindStringSubmatch(console)
		if m == nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(m[1], 64)
		return f, err == nil
	}
	a, ok1 := at("freezing")
	b, ok2 := at("bundle complete")
	return b - a, ok1 && ok2
}
