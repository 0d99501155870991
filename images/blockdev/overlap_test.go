package blockdev

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// gptFile makes a 64 MiB file with two partitions of 16 MiB.
func gptFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	tb := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 32768 - 1, Type: gpt.LinuxSwap, Name: "a"},
		{Index: 2, Start: 2048 + 32768, End: 2048 + 2*32768 - 1, Type: gpt.LinuxSwap, Name: "b"},
	}}
	if err := tb.Write(f, 64<<20); err != nil {
		t.Fatal(err)
	}
}

func TestOverlaps(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.img")
	gptFile(t, a)
	os.MkdirAll(filepath.Join(dir, "x"), 0o755)
	os.Link(a, filepath.Join(dir, "hard.img"))
	os.Symlink(a, filepath.Join(dir, "sym.img"))
	other := filepath.Join(dir, "other.img")
	gptFile(t, other)
	tests := []struct {
		x, y string
		want bool
	}{
		{a, a, true},
		{a, filepath.Join(dir, "x", "..", "a.img"), true}, // the audit's case
		{a, filepath.Join(dir, "hard.img"), true},
		{filepath.Join(dir, "sym.img"), a, true},
		{a + "#1", a, true},
		{a + "#1", filepath.Join(dir, "hard.img") + "#1", true},
		{a + "#1", a + "#2", false},
		{a, other, false},
		{a + "#1", other + "#1", false},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(strings.TrimPrefix(tc.x+" "+tc.y, dir), dir, ""), func(t *testing.T) {
			x, err := Open(tc.x, false)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			y, err := Open(tc.y, false)
			if err != nil {
				t.Fatal(err)
			}
			defer y.Close()
			if got, err := x.Overlaps(y); err != nil || got != tc.want {
				t.Errorf("Overlaps = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// A partition's device node and its disk's are the same bytes: checked on
// a loop device with partitions (root, losetup -P).
func TestOverlapsBlockPartitions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	gptFile(t, img)
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", img).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", loop).Run()
	// This host's kernel may not read a GPT itself: partx adds the
	// partitions with BLKPG. Their nodes are made here from sysfs.
	if out, err := exec.Command("partx", "-a", loop).CombinedOutput(); err != nil {
		t.Logf("partx -a %s: %v %s", loop, err, out)
	}
	name := filepath.Base(loop)
	for _, n := range []string{"p1", "p2"} {
		var b []byte
		for i := 0; i < 50; i++ {
			if b, err = os.ReadFile("/sys/class/block/" + name + n + "/dev"); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("partition %s%s: %v", name, n, err)
		}
		var ma, mi uint32
		fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &ma, &mi)
		if err := unix.Mknod(filepath.Join(dir, n), unix.S_IFBLK|0o600, int(unix.Mkdev(ma, mi))); err != nil {
			t.Fatal(err)
		}
	}
	part := func(n string) string { return filepath.Join(dir, n) }
	tests := []struct {
		x, y string
		want bool
	}{
		{part("p1"), loop, true},
		{part("p2"), loop + "#2", true},
		{part("p1"), loop + "#2", false},
		{part("p1"), part("p2"), false},
		{part("p1"), img + "#1", false}, // the file and the loop device are other objects
	}
	for _, tc := range tests {
		x, err := Open(tc.x, false)
		if err != nil {
			t.Fatal(err)
		}
		y, err := Open(tc.y, false)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := x.Overlaps(y); err != nil || got != tc.want {
			t.Errorf("%s, %s: Overlaps = %v, %v; want %v", tc.x, tc.y, got, err, tc.want)
		}
		x.Close()
		y.Close()
	}
}
