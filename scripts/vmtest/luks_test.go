//go:build vm

package vmtest

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/xts"

	"github.com/thawlinux/thaw/agent/probe"
	"github.com/thawlinux/thaw/images/bundle"
	"github.com/thawlinux/thaw/scripts/harness"
)

// luksRoot is the LUKS volume in a server's root LV, as the test read it
// from the running server: its volume key (dm-crypt's key) and where its
// data starts.
type luksRoot struct {
	key    []byte
	offset int64 // bytes from the LV's start to the encrypted data
}

// loadLUKSRoot reads the volume key and data offset that buildserver kept
// beside the LUKS server's disk (read in its builder VM, never in the
// server: a key the test read inside the server could land in its swap).
func loadLUKSRoot(t *testing.T, s *harness.Server) *luksRoot {
	t.Helper()
	k, err := os.ReadFile(filepath.Join(s.Dir, "luks-key"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := os.ReadFile(filepath.Join(s.Dir, "luks-offset"))
	if err != nil {
		t.Fatal(err)
	}
	l := &luksRoot{}
	l.key, err = hex.DecodeString(strings.TrimSpace(string(k)))
	if err != nil || len(l.key) != 64 {
		t.Fatalf("luks-key: %v (%d bytes)", err, len(l.key))
	}
	if l.offset, err = strconv.ParseInt(strings.TrimSpace(string(o)), 10, 64); err != nil {
		t.Fatal(err)
	}
	return l
}

// holds reports which of needles r holds, reading it once in 1 MiB pieces.
func holds(r io.Reader, needles map[string][]byte) ([]string, error) {
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	found := map[string]bool{}
	buf := make([]byte, 0, 1<<20+longest)
	piece := make([]byte, 1<<20)
	for {
		n, err := r.Read(piece)
		buf = append(buf, piece[:n]...)
		for k, nd := range needles {
			found[k] = found[k] || bytes.Contains(buf, nd)
		}
		if len(buf) > longest {
			buf = append(buf[:0], buf[len(buf)-longest:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	var out []string
	for k := range found {
		if found[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// fsckLUKSRoot decrypts the root LV's volume (aes-xts-plain64, 512-byte
// sectors) from the target disk with the key the test read, and checks the
// filesystem inside with e2fsck -fn: the host has no device-mapper.
func fsckLUKSRoot(t *testing.T, disk string, l *luksRoot) {
	t.Helper()
	d, err := probe.DescribeDisk(disk)
	if err != nil || len(d.Partitions) == 0 {
		t.Fatalf("the partitions of %s: %v", disk, err)
	}
	// The root LV is the PV's first extent: 1 MiB into partition 1.
	start := d.Partitions[0].Start + 1<<20 + l.offset
	const size = 1536 << 20
	c, err := xts.NewCipher(aes.NewCipher, l.key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain := filepath.Join(t.TempDir(), "root.ext4")
	out, err := os.Create(plain)
	if err != nil {
		t.Fatal(err)
	}
	buf, dec := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, start+off); err != nil {
			t.Fatalf("read %s at %d: %v", disk, start+off, err)
		}
		zero := true
		for i := 0; i < len(buf); i += 512 {
			c.Decrypt(dec[i:i+512], buf[i:i+512], uint64((off+int64(i))/512))
			zero = zero && !bytes.ContainsFunc(dec[i:i+512], func(r rune) bool { return r != 0 })
		}
		if !zero {
			if _, err := out.WriteAt(dec, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	out.Truncate(size)
	out.Close()
	fsck, err := exec.Command("e2fsck", "-f", "-n", plain).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn of the decrypted root filesystem after resume: %v\n%s", err, fsck)
	}
	t.Logf("fsck of the root filesystem (decrypted on the host): clean\n%s", fsck)
}

// E12: the Debian 13 server with its root in a LUKS2 volume on an LV (LUKS
// on LVM: the initramfs opens it with a key file) moves to E6's machine.
// The LVs are re-pointed; root_crypt, above them, keeps its table. The
// volume key lives in the server's RAM, so in the bundle's memory stream
// (which is why bundles are encrypted); it must appear nowhere else: not
// in the manifest, the disk streams, the agent's log records (the plan it
// put in the mailbox among them), the consoles or the store's files.
func TestAgentLUKS(t *testing.T) {
	agentCaseParallel(t)
	s, err := harness.LoadServerSuite("luks")
	if err != nil {
		t.Fatal(err)
	}
	root := loadLUKSRoot(t, s)
	c, _, _, _ := captureServerOn(t, s, "luks-capture", "", captureOpts{secure: true, before: func(vm *harness.VM) {
		out, _, err := vm.Run("findmnt -no SOURCE /; dmsetup table; lsblk -o NAME,TYPE,FSTYPE", time.Minute)
		t.Logf("the source: root, device-mapper (keys hidden by dmsetup), block devices: %v\n%s", err, out)
	}})
	ac := agentCase{name: "e12-luks", vmware: true, c: c, luks: root}
	at := testMoved(t, ac, func(at *agentTarget) {
		out, status, err := at.vm.Run("findmnt -no SOURCE /; dmsetup table; dmsetup deps -o devname root_crypt", time.Minute)
		if err != nil || status != 0 || !strings.Contains(out, "/dev/mapper/root_crypt") {
			t.Errorf("root after the move: %v %d %q", err, status, out)
		}
		t.Logf("resumed: root and device-mapper:\n%s", out)
	}, "vmw_pvscsi")

	// dm-crypt wipes its copy of a keyring key once the cipher has it
	// (crypt_ctr_cipher): in RAM the key lives as the two AES-256 key
	// schedules of aes-xts, each starting with its 32-byte half.
	hexKey := []byte(hex.EncodeToString(root.key))
	needles := map[string][]byte{"raw first half": root.key[:32], "raw second half": root.key[32:],
		"hex": hexKey, "HEX": bytes.ToUpper(hexKey), "hex first half": hexKey[:64], "hex second half": hexKey[64:]}
	where := func(name string, r io.Reader) []string {
		found, err := holds(r, needles)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return found
	}
	// The bundle's streams, decrypted: the key is in the memory stream
	// (the proof that this search finds it) and in no disk stream.
	br := openBundleFile(t, c.bundle)
	ids, err := bundle.LoadIdentities(c.identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Unlock(ids...); err != nil {
		t.Fatal(err)
	}
	for _, sm := range br.Index.Streams {
		r, err := br.OpenStream(sm.Name)
		if err != nil {
			t.Fatal(err)
		}
		found := where("stream "+sm.Name, r)
		switch {
		case sm.Name == "memory" && !(slices.Contains(found, "raw first half") && slices.Contains(found, "raw second half")):
			t.Errorf("the volume key's halves are not in the memory stream (%v): the search would find nothing anywhere", found)
		case sm.Name == "memory":
			t.Logf("the volume key is in the memory stream (%s), as it must be", strings.Join(found, ", "))
		case len(found) > 0:
			t.Errorf("the volume key (%s) is in the disk stream %s", strings.Join(found, ", "), sm.Name)
		}
	}
	mj, _ := json.Marshal(br.Manifest)
	if found := where("manifest", bytes.NewReader(mj)); len(found) > 0 {
		t.Errorf("the volume key (%s) is in the manifest", strings.Join(found, ", "))
	}
	// Every other file: the consoles and serve logs, the agent's log
	// records (its plan, the mailbox payload's), and both stores' files
	// (the bundle, encrypted, among them).
	var files []string
	for _, dir := range []string{logDir, filepath.Dir(c.bundle), at.store} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && (dir != logDir || strings.HasPrefix(d.Name(), "luks-capture") || strings.HasPrefix(d.Name(), ac.name)) {
				files = append(files, p)
			}
			return nil
		})
	}
	for _, p := range files {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if found := where(p, fh); len(found) > 0 {
			t.Errorf("the volume key (%s) is in %s", strings.Join(found, ", "), p)
		}
		fh.Close()
	}
	t.Logf("searched %d files and %d streams for the volume key (raw, hex): only the memory stream holds it", len(files), len(br.Index.Streams))
}
