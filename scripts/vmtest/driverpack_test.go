//go:build vm

package vmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/ulikunitz/xz"

	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/scripts/harness"
)

// The drivers a Debian 12 cloud kernel lacks that E10's target needs.
const packModules = "ahci,e1000e"

var packOnce struct {
	sync.Mutex
	path map[string]string // by release and modules
}

// needPack builds, once, the driver pack of the Debian 12 capture's kernel
// with AHCI and e1000e: thaw driverpack build in a bookworm chroot (kept
// in the build cache), signed with the capture's key.
func needPack(t *testing.T, c *capturedServer) string {
	return needPackWith(t, c, packModules)
}

// needPackWith builds, once per release and modules, the driver pack of
// the capture's kernel with modules ("": thaw's own only), in the
// release's chroot (kept in the build cache), signed with the capture's
// key.
func needPackWith(t *testing.T, c *capturedServer, modules string) string {
	t.Helper()
	packOnce.Lock()
	defer packOnce.Unlock()
	release := openBundleFile(t, c.bundle).Manifest.Kernel.Release
	key := release + " " + modules
	if p := packOnce.path[key]; p != "" {
		return p
	}
	cache, err := harness.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cache, "packs-test", strings.ReplaceAll(strings.Trim(modules+",own", ","), ",", "-"))
	args := []string{"driverpack", "build", "--release", release, "--key", c.key, "--out", out, "--cache", cache}
	if modules != "" {
		args = append(args, "--modules", modules)
	}
	start := time.Now()
	if _, err := thaw(t, args...); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING %-34s %6.1fs", "driverpack build "+release, time.Since(start).Seconds())
	if packOnce.path == nil {
		packOnce.path = map[string]string{}
	}
	packOnce.path[key] = filepath.Join(out, driverpack.FileName(release))
	return packOnce.path[key]
}

// E10: the Debian 12 server on its cloud kernel, which has no AHCI and no
// e1000e driver, moves to a machine whose disk is on AHCI and whose NIC is
// an e1000e, with twice the RAM and 2 vCPUs. The plan takes both drivers
// from the driver pack; the resumed server loads them from its mailbox
// (unsigned by Debian and out of tree: the kernel is tainted E and O),
// adds this machine's RAM beyond the source's map and its second CPU with
// the pack's thaw_hotadd, re-points its LVs to the AHCI disk and gives
// the e1000e the source's name and address.
//
// The target's second 512 MiB lies above 4 GiB (max-ram-below-4g), as on
// any machine with more than 3 GiB: whole memory blocks, inside the
// source's 64-bit PCI window, which thaw_hotadd moves up first. (With all
// of it below 4 GiB, SeaBIOS's 128 KiB at the top leaves the last block
// partial, and 83% of the RAM arrives.) The source ran one CPU with room
// for two (-smp 1,maxcpus=2).
func TestAgentDriverPack(t *testing.T) {
	agentCaseParallel(t)
	c := needCapturedSuite(t, "bookworm")
	pack := needPack(t, c)
	ac := agentCase{name: "e10-pack", vmware: true, ahci: true, memMB: 1024, cpus: 2, c: c, packs: pack,
		extra: []string{"-machine", "max-ram-below-4g=512M"}}
	at := testMoved(t, ac, func(at *agentTarget) {
		out, status, err := at.vm.Run("cat /proc/sys/kernel/tainted; grep -E '^(ahci|libahci|e1000e) ' /proc/modules | cut -d' ' -f1 | sort | tr '\\n' ' '; echo; grep MemTotal /proc/meminfo; nproc", time.Minute)
		if err != nil || status != 0 {
			t.Fatalf("modules on the resumed server: %v %d %q", err, status, out)
		}
		t.Logf("resumed server: tainted, pack modules, memory, CPUs:\n%s", out)
		f := strings.Fields(out)
		var taint int
		if len(f) > 0 {
			for _, ch := range f[0] {
				taint = taint*10 + int(ch-'0')
			}
		}
		if taint&(1<<13) == 0 {
			t.Errorf("the kernel is not tainted E (unsigned module): tainted=%d", taint)
		}
		if !strings.Contains(out, "ahci e1000e libahci") {
			t.Errorf("the pack's modules are not all loaded: %q", out)
		}
		// The RAM beyond the source's map, added by the pack's
		// thaw_hotadd in whole blocks: MemTotal grew by what the plan
		// said, nearly to the byte (the new blocks' struct pages come
		// out of it).
		var pl struct {
			HotAdd *struct {
				Bytes uint64 `json:"bytes"`
			} `json:"hot_add"`
		}
		json.Unmarshal(agentRecord(t, at, ac.name, "plan"), &pl)
		if pl.HotAdd == nil {
			t.Fatalf("the agent's plan adds no RAM")
		}
		var memKB uint64
		fmt.Sscanf(out[strings.Index(out, "MemTotal:")+len("MemTotal:"):], "%d", &memKB)
		before := openBundleFile(t, c.bundle).Manifest.MemoryBytes
		after := memKB << 10
		t.Logf("MemTotal %d MiB on the source, %d MiB resumed here (%.0f%% of this machine's %d MiB); the plan added %d MiB",
			before>>20, after>>20, 100*float64(after)/float64(ac.memMB<<20), ac.memMB, pl.HotAdd.Bytes>>20)
		if after < before+pl.HotAdd.Bytes*97/100 {
			t.Errorf("MemTotal %d MiB: the %d MiB added did not arrive (source %d MiB)", after>>20, pl.HotAdd.Bytes>>20, before>>20)
		}
		if after*10 < uint64(ac.memMB)<<20*9 {
			t.Errorf("MemTotal %d MiB is less than 90%% of this machine's %d MiB", after>>20, ac.memMB)
		}
		if n := f[len(f)-1]; n != "2" {
			t.Errorf("the resumed server runs %s CPU(s), not this machine's 2", n)
		}
	}, "pack "+filepath.Base(pack), "load module ahci", "load module e1000e", "taints the resumed kernel",
		"of RAM and 1 CPU(s): load module thaw_hotadd", "online 4 memory block(s) of 128 MiB", "online 1 CPU(s)", "resumes with 2 of this machine's 2 CPUs")

	// E11, in the plan: the same move with a pack that cannot be trusted
	// or loaded is refused (check PACK) by thaw plan against the profile
	// the agent recorded; without a pack, the refusal (check DRIVER)
	// names the build command.
	probe := filepath.Join(t.TempDir(), "target.json")
	os.WriteFile(probe, agentRecord(t, at, ac.name, "probe"), 0o644)
	release := openBundleFile(t, c.bundle).Manifest.Kernel.Release
	empty := t.TempDir()
	cases := badPacks(t, c, pack)
	cases["none"] = empty
	for _, name := range []string{"flipped", "other-key", "other-release", "other-vermagic", "none"} {
		out, err := thaw(t, "plan", "--image", c.bundle, "--pubkey", c.pub, "--identity", c.identity, "--target", probe,
			"--disk", ac.targetDisk(), "--packs", cases[name], "--json")
		if err == nil {
			t.Errorf("%s: thaw plan did not refuse", name)
			continue
		}
		var p struct {
			Refusals []struct{ Check, Reason, Hint string } `json:"refusals"`
		}
		json.Unmarshal(out, &p)
		want := "pack"
		if name == "none" {
			want = "driver"
		}
		found := false
		for _, r := range p.Refusals {
			if r.Check == want {
				found = true
				t.Logf("E11 %s: refused: %s (fix: %s)", name, r.Reason, r.Hint)
				if name == "none" && !strings.Contains(r.Hint, "thaw driverpack build --release "+release+" --modules ahci") {
					t.Errorf("none: the fix does not name the build: %s", r.Hint)
				}
			}
		}
		if !found {
			t.Errorf("%s: no %s refusal in %s", name, want, out)
		}
	}
}

// E11 in the agent: the move of E10 with the pack's e1000e altered by one
// bit is refused by the agent's plan (check PACK) before any write, and
// the target's disks hash the same before and after.
func TestAgentRefusesBadPack(t *testing.T) {
	agentCaseParallel(t)
	c := needCapturedSuite(t, "bookworm")
	bad := badPacks(t, c, needPack(t, c))["flipped"]
	pack := filepath.Join(bad, filepath.Base(needPack(t, c)))
	refusal(t, agentCase{name: "e11-pack-flipped", vmware: true, ahci: true, memMB: 1024, cpus: 2, c: c, packs: pack},
		regexp.MustCompile(`PACK: driver pack .*e1000e`))
}

// badPacks writes the variants of the good pack that must be refused,
// each as RELEASE.pack in a directory of its own: a byte of a module
// flipped; its modules signed by another key; its modules under a header
// of another release; and Debian 13's ahci (another release's vermagic)
// in a pack that claims this release, signed by the right key.
func badPacks(t *testing.T, c *capturedServer, good string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(good)
	release := strings.TrimSuffix(base, ".pack")
	dir := t.TempDir()
	out := map[string]string{}
	put := func(name string, data []byte) {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, base), data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = d
	}
	// A bit of e1000e.ko flipped: its tar header, then its data.
	at := bytes.Index(b, []byte("modules/e1000e.ko\x00"))
	if at < 0 || at%512 != 0 || at+512+4096 > len(b) {
		t.Fatalf("no e1000e.ko member in %s", good)
	}
	flipped := bytes.Clone(b)
	flipped[at+512+4000] ^= 0x40
	put("flipped", flipped)

	p := readPack(t, c, good)
	key, err := bundle.LoadPrivateKey(c.key, "")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if _, err := thaw(t, "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	otherKey, err := bundle.LoadPrivateKey(other+".key", "")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, rel string, k minisign.PrivateKey, mods ...[]byte) {
		var buf bytes.Buffer
		w := driverpack.NewWriter(&buf, rel)
		for _, m := range mods {
			if err := w.Add(m); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(driverpack.BuildInfo{}, "", k); err != nil {
			t.Fatal(err)
		}
		put(name, buf.Bytes())
	}
	var mods [][]byte
	for _, n := range p.Names() {
		mods = append(mods, p.Module(n))
	}
	write("other-key", release, otherKey, mods...)
	write("other-release", strings.Replace(release, "-cloud-", "-rt-", 1), key, mods...)

	k13, err := harness.LoadKernel("debian13-cloud")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(k13.Modules, "kernel/drivers/ata/ahci.ko.xz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	xr, err := xz.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	ahci13, err := io.ReadAll(xr)
	if err != nil {
		t.Fatal(err)
	}
	write("other-vermagic", release, key, ahci13)
	return out
}

// readPack reads the pack file and verifies it with the capture's key.
func readPack(t *testing.T, c *capturedServer, pack string) *driverpack.Pack {
	t.Helper()
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundle.LoadPublicKey(c.pub)
	if err != nil {
		t.Fatal(err)
	}
	p, err := driverpack.Read(bytes.NewReader(b), pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// packModule is module name of the pack file, read and verified with the
// capture's key.
func packModule(t *testing.T, c *capturedServer, pack, name string) []byte {
	t.Helper()
	m := readPack(t, c, pack).Module(name)
	if m == nil {
		t.Fatalf("%s has no %s", pack, name)
	}
	return m
}
