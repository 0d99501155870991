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
	"testing"
	"time"

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
	out, err := exec.Command("go", "build", "-o", thawBin, "github.com/thawlinux/thaw/cmd/thaw").CombinedOutput()
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
	cmd := exec.Command(thawBin, args...)
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
