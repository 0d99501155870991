//go:build vm

package vmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/agent/stick"
	"github.com/thawlinux/thaw/scripts/harness"
)

// writeStick writes a recovery stick with thaw media usb carrying the
// captured bundle as server.thaw, decryptable by the stick's agent.
func writeStick(t *testing.T, dir string, c *capturedServer, args ...string) string {
	t.Helper()
	kernel, _ := agentFiles(t)
	img := filepath.Join(dir, "stick.img")
	args = append([]string{"media", "usb", "--out", img, "--agent", filepath.Dir(kernel), "--bundle", "server.thaw=" + c.bundle,
		"--pubkey", c.pub, "--identity", c.identity, "--console", "tty0", "--console", "ttyS0", "--timeout", "2"}, args...)
	out, err := thaw(t, args...)
	if err != nil {
		t.Fatalf("thaw media usb: %v\n%s", err, out)
	}
	return img
}

// stickState is what may not change on the stick: the bytes before the
// data partition (protective MBR, GPT, ESP), the backup GPT, and every
// file of the data partition outside thaw-logs/ (read with mtools); and
// the logs there.
type stickState struct {
	head, tail string
	files      map[string]string
	logs       map[string]string // name → contents
}

func readStick(t *testing.T, img string) stickState {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := d.GetPartitionTable()
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	parts := tbl.(*gpt.Table).Partitions
	if len(parts) != 2 || parts[1].Name != stick.DataLabel {
		t.Fatalf("stick partitions: %+v", parts)
	}
	dataStart, dataEnd := int64(parts[1].Start)*512, int64(parts[1].End+1)*512
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(p []byte) string { s := sha256.Sum256(p); return hex.EncodeToString(s[:]) }
	st := stickState{head: sum(b[:dataStart]), tail: sum(b[dataEnd:]), files: map[string]string{}, logs: map[string]string{}}
	at := img + "@@" + strconv.FormatInt(dataStart, 10)
	out, err := exec.Command("mdir", "-/", "-b", "-i", at, "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasSuffix(f, "/") {
			continue
		}
		data, err := exec.Command("mcopy", "-n", "-i", at, f, "-").Output()
		if err != nil {
			t.Fatalf("mcopy %s: %v", f, err)
		}
		name := strings.TrimPrefix(f, "::/")
		if strings.HasPrefix(name, stick.LogDir+"/") {
			st.logs[strings.TrimPrefix(name, stick.LogDir+"/")] = string(data)
			continue
		}
		st.files[name] = sum(data)
	}
	return st
}

// stickLogsAfter reads the stick again, fails unless it is before plus n
// logs, and returns the logs.
func stickLogsAfter(t *testing.T, img string, before stickState, n int) map[string]string {
	t.Helper()
	after := readStick(t, img)
	logs := after.logs
	after.logs = nil
	sameStick(t, before, after)
	if len(logs) != n {
		t.Fatalf("logs on the stick: %v, want %d", keys(logs), n)
	}
	return logs
}

// sameStick fails unless after is before plus logs.
func sameStick(t *testing.T, before, after stickState) {
	t.Helper()
	if before.head != after.head || before.tail != after.tail {
		t.Errorf("the stick's GPT or ESP changed")
	}
	if len(before.files) != len(after.files) {
		t.Errorf("files outside %s: %d before, %d after", stick.LogDir, len(before.files), len(after.files))
	}
	for n, h := range before.files {
		if after.files[n] != h {
			t.Errorf("%s on the stick changed", n)
		}
	}
	if len(before.logs) != 0 {
		t.Errorf("logs before the boot: %v", before.logs)
	}
}

// stickTarget is a machine without any NIC whose firmware boots the
// stick from USB: the target disks at the source's slots.
func stickTarget(t *testing.T, name, img string, c *capturedServer, uefi, q35 bool, memMB int) (*harness.VM, string, string) {
	t.Helper()
	dir := t.TempDir()
	target, blank, tools := filepath.Join(dir, "target.img"), blankDisk(t, dir), filepath.Join(dir, "tools.img")
	copyFile(t, c.tools, tools)
	emptyDiskLike(t, target, c.s.Disk)
	cfg := harness.VMConfig{Name: name, MemoryMB: memMB, Control: true, LogDir: logDir, Timeout: 14 * time.Minute,
		Disks: []harness.Disk{{Path: target, Addr: "0x3"}, {Path: blank, Addr: "0x4"}, {Path: tools, Addr: "0x5"}},
		Extra: []string{"-device", "qemu-xhci,id=xhci,addr=0x7", "-drive", "if=none,id=stick,format=raw,cache=unsafe,file=" + img,
			"-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"}}
	if uefi {
		cfg.Firmware = ovmf
	}
	if q35 {
		cfg.Extra = append(cfg.Extra, "-machine", "q35")
	}
	vm, err := harness.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm, target, blank
}

// M3: the recovery stick restores offline. The target has no NIC; OVMF
// boots the stick from USB (systemd-boot), whose default entry
// (--default) is the restore of the bundle on it, a server captured on
// OVMF. The server resumes with its state, the stick holds the agent's
// logs afterwards, and nothing else on it changed.
func TestAgentUSBOffline(t *testing.T) {
	agentCaseParallel(t)
	if _, err := os.Stat(ovmf); err != nil {
		t.Fatalf("OVMF: %v (install ovmf)", err)
	}
	testUSBOffline(t, "m3-usb", needCapturedSuite(t, "trixie-uefi"), true)
}

// M3 on BIOS: SeaBIOS boots the same kind of stick through gptmbr.bin and
// syslinux, with the server captured on SeaBIOS.
func TestAgentUSBOfflineBIOS(t *testing.T) {
	agentCaseParallel(t)
	testUSBOffline(t, "m3-usb-bios", needCaptured(t), false)
}

// testUSBOffline: the target has more RAM than the source (SeaBIOS and
// OVMF keep more memory for themselves with a USB controller, so the
// source's RAM fits only in more): the agent boots itself again with the
// source's memory map, taking its kernel from the stick's ESP
// (thaw.kernel=file:…).
func testUSBOffline(t *testing.T, name string, c *capturedServer, uefi bool) {
	img := writeStick(t, t.TempDir(), c, "--default", "server", "--disk", "vda")
	before := readStick(t, img)
	start := time.Now()
	vm, target, _ := stickTarget(t, name, img, c, uefi, false, 768)
	defer failWithConsole(t, vm)
	m, _, err := vm.WaitFor(regexp.MustCompile(resumedRE.String()+`|`+refusedRE.String()), 0, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !resumedRE.MatchString(m[0]) {
		t.Fatalf("the agent stopped: %s", m[0])
	}
	t.Logf("TIMING %-34s %6.1fs", name+": stick boot → resumed", time.Since(start).Seconds())
	con := vm.Console()
	for _, want := range []string{"[ ok ] stick", "[skip] dhcp", "no network needed", "log written to the stick: thaw-logs/", "SHA-256 checked"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, tm := range timingRE.FindAllStringSubmatch(con, -1) {
		t.Logf("agent stages: %s", tm[1])
	}
	out, status, err := vm.Run("md5sum </mnt/p/blob", 2*time.Minute)
	if err != nil || status != 0 || !strings.Contains(out, c.blobSum) {
		t.Fatalf("swapped-out blob after the restore: %q %v %d", out, err, status)
	}
	checkResumed(t, vm, c.h)
	vm.Kill()
	fsckRoot(t, target)

	// stage 1's, then stage 2's
	logs := stickLogsAfter(t, img, before, 2)
	for name, text := range logs {
		if strings.HasSuffix(name, "-server-stage1.log") {
			if !strings.Contains(text, "[ ok ] write") {
				t.Errorf("log %s on the stick:\n%s", name, text)
			}
			continue
		}
		if !strings.HasSuffix(name, "-server-handed-over.log") || !strings.Contains(text, "[ ok ] firmware") || !strings.Contains(text, "[....] restore") {
			t.Errorf("log %s on the stick:\n%s", name, text)
		}
		t.Logf("the stick's log: %s/%s, %d lines", stick.LogDir, name, strings.Count(text, "\n"))
	}
}

// M4: thaw.disk= naming the stick is refused, and nothing is written but
// the log. The target boots the stick on UEFI (OVMF, q35, systemd-boot);
// the bundle was captured on BIOS, which is refused too.
func TestAgentUSBStickAsTarget(t *testing.T) {
	agentCaseParallel(t)
	if _, err := os.Stat(ovmf); err != nil {
		t.Fatalf("OVMF: %v (install ovmf)", err)
	}
	c := needCaptured(t)
	img := writeStick(t, t.TempDir(), c, "--default", "server", "--disk", "sda")
	before := readStick(t, img)
	vm, target, blank := stickTarget(t, "m4-usb", img, c, true, true, 512)
	defer failWithConsole(t, vm)
	disks := [2][32]byte{fileHash(t, target), fileHash(t, blank)}
	m, _, err := vm.WaitFor(regexp.MustCompile(refusedRE.String()+`|`+resumedRE.String()+`|memory image →`), 0, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m[0], "REFUSED") {
		t.Fatalf("not refused: %s", m[0])
	}
	// the box, then the log is written, then the retry hint
	if _, _, err := vm.WaitFor(regexp.MustCompile(`To try again`), 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	con := vm.Console()
	box := boxText(con[strings.Index(con, m[0]):])
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`MEDIUM: thaw.disk= names sda, the thaw stick this agent runs from fix: name the server's target disk instead \(this machine's disks: vda`),
		regexp.MustCompile(`FIRMWARE: the image was captured on a machine booted by BIOS, this machine booted by UEFI`),
		regexp.MustCompile(`code R-\S+ log: thaw-logs/\S+-server-refused.log on the stick`),
	} {
		if !want.MatchString(box) {
			t.Errorf("the box does not say %s:\n%s", want, box)
		}
	}
	t.Logf("refused as wanted:\n%s", box)
	vm.Kill()
	if [2][32]byte{fileHash(t, target), fileHash(t, blank)} != disks {
		t.Error("a target disk changed although the agent refused")
	}
	logs := stickLogsAfter(t, img, before, 1)
	for name, text := range logs {
		if !strings.Contains(text, "REFUSED") || !strings.Contains(text, "MEDIUM") {
			t.Errorf("log %s:\n%s", name, text)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%s (%d bytes)", k, len(m[k])))
	}
	return out
}

// The rescue shell on the serial console, as remote hands reach it: the
// stick's "rescue shell" entry (thaw.rescue=1), and Enter after a
// refusal's box. A command typed at it runs.
func TestAgentRescueShell(t *testing.T) {
	agentCaseParallel(t)
	kernel, initrd := agentFiles(t)
	for _, tc := range []struct {
		name, params, first string
		enter               bool
	}{
		{"rescue-entry", "thaw.rescue=1", "thaw rescue shell. To restore by hand:", false},
		{"after-refusal", "thaw.image=ftp://10.0.2.2/server.thaw", "Press Enter for the rescue shell.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := harness.Start(harness.VMConfig{Name: "rescue-" + tc.name, Kernel: kernel, Initrd: initrd, Append: tc.params,
				MemoryMB: 512, Input: true, LogDir: logDir, Timeout: 6 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Kill()
			defer failWithConsole(t, vm)
			if _, _, err := vm.WaitFor(regexp.MustCompile(regexp.QuoteMeta(tc.first)), 0, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			if tc.enter {
				time.Sleep(time.Second)
				vm.Type("\r")
			}
			// gosh's prompt, at the start of a line (its plain line
			// reader: the terminal echoes what is typed)
			if _, _, err := vm.WaitFor(regexp.MustCompile(`\n\$ `), 0, time.Minute); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			vm.Type("echo RESCUE-$((40+2))\r")
			// The line editor redraws its line on every key: under TCG,
			// beside another machine, a typed line took over a minute.
			if _, _, err := vm.WaitFor(regexp.MustCompile(`RESCUE-42`), 0, 3*time.Minute); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(vm.Console(), "Attempted to kill init") {
				t.Fatal("init died")
			}
		})
	}
}
