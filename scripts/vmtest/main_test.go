//go:build vm

package vmtest

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/swsusp"
	"github.com/thawlinux/thaw/scripts/harness"
)

var (
	thawBin string
	logDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	cache, err := harness.CacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logDir = filepath.Join(filepath.Dir(cache), "vmlogs")
	os.MkdirAll(logDir, 0o755)
	dir, err := os.MkdirTemp("", "thaw-vmtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	thawBin = filepath.Join(dir, "thaw")
	// Static, so that it also runs inside the guests.
	build := exec.Command("go", "build", "-o", thawBin, "github.com/thawlinux/thaw/cmd/thaw")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build thaw: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// thaw runs the thaw binary and returns its stdout.
func thaw(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return thawEnv(t, nil, args...)
}

// thawEnv is thaw with env added to the environment.
func thawEnv(t *testing.T, env []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(thawBin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	t.Logf("thaw %v → %v\n%s%s", args, err, out, stderr)
	if err != nil {
		return out, fmt.Errorf("thaw %v: %w: %s", args, err, stderr)
	}
	return out, nil
}

// inspectJSON is the subset of `thaw inspect --json` the tests read.
type inspectJSON struct {
	Verdict     string   `json:"verdict"`
	Reasons     []string `json:"reasons"`
	Compression string   `json:"compression"`
	Flags       uint32   `json:"flags"`
	Kernel      struct {
		Release     string `json:"release"`
		VersionCode uint32 `json:"version_code"`
	} `json:"kernel"`
	CRC32 struct {
		Checked bool `json:"checked"`
	} `json:"crc32"`
	Arch struct {
		MagicOK      bool   `json:"magic_ok"`
		E820Checksum string `json:"e820_checksum"`
	} `json:"arch"`
	Pages struct {
		Total, Saving, Data, Zero, Metadata, PFNs uint64
	} `json:"pages"`
}

func inspect(t *testing.T, ref string) inspectJSON {
	t.Helper()
	out, err := thaw(t, "inspect", "--json", ref)
	var r inspectJSON
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("inspect %s: %v (json: %v)", ref, err, jerr)
	}
	return r
}

// kernelLog holds what a hibernating kernel printed about its image.
type kernelLog struct {
	Copied, Zero, Saving uint64
	Compressed           bool
}

var (
	imageCreatedRE = regexp.MustCompile(`Image created \((\d+) pages copied(?:, (\d+) zero pages)?\)`)
	savingRE       = regexp.MustCompile(`(Compressing and saving|Saving) image data (?:pages )?\((\d+) pages\)`)
)

func parseKernelLog(t *testing.T, console string) kernelLog {
	t.Helper()
	var k kernelLog
	m := imageCreatedRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("the kernel did not print \"Image created\"")
	}
	k.Copied, _ = strconv.ParseUint(m[1], 10, 64)
	if m[2] != "" {
		k.Zero, _ = strconv.ParseUint(m[2], 10, 64)
	}
	s := savingRE.FindStringSubmatch(console)
	if s == nil {
		t.Fatalf("the kernel did not print \"saving image data\"")
	}
	k.Compressed = s[1] != "Saving"
	k.Saving, _ = strconv.ParseUint(s[2], 10, 64)
	return k
}

// failWithConsole prints the tail of a VM's console when the test failed.
func failWithConsole(t *testing.T, vm *harness.VM) {
	t.Helper()
	if t.Failed() {
		t.Logf("console of %s (full log %s):\n%s", t.Name(), vm.LogPath, vm.Tail(80))
	}
}

const vmTimeout = 4 * time.Minute

var biosE820RE = regexp.MustCompile(`BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\S+(?: \S+)?)`)

// bootE820 is the firmware memory map a kernel printed at boot
// ("BIOS-e820: [mem A-B] type" lines).
func bootE820(t *testing.T, console string) []swsusp.E820Entry {
	t.Helper()
	types := map[string]uint32{"usable": 1, "reserved": 2, "ACPI data": 3, "ACPI NVS": 4, "unusable": 5}
	var table []swsusp.E820Entry
	for _, m := range biosE820RE.FindAllStringSubmatch(console, -1) {
		a, _ := strconv.ParseUint(m[1], 16, 64)
		b, _ := strconv.ParseUint(m[2], 16, 64)
		typ, ok := types[strings.TrimSpace(m[3])]
		if !ok {
			t.Fatalf("unknown e820 type %q", m[3])
		}
		table = append(table, swsusp.E820Entry{Addr: a, Size: b - a + 1, Type: typ})
	}
	if len(table) == 0 {
		t.Fatal("the kernel printed no BIOS-e820 map")
	}
	return table
}
