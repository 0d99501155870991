package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
)

// fakeAgent is an agent directory with small stand-in boot files.
func fakeAgent(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initramfs.cpio.gz"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(strings.Repeat(f, 5000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestMediaUSB: the menu and the stick's parameters; every bad input is
// refused before the image file exists.
func TestMediaUSB(t *testing.T) {
	dir := t.TempDir()
	agent := fakeAgent(t)
	b := filepath.Join(dir, "web1.thaw")
	os.WriteFile(b, []byte("not really a bundle"), 0o644)
	efi := filepath.Join(dir, "sd.efi")
	os.WriteFile(efi, []byte("MZ"), 0o644)
	img := filepath.Join(dir, "stick.img")
	base := []string{"media", "usb", "--agent", agent, "--systemd-boot", efi, "--syslinux", ""}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"--bundle", b}, "--out is required"},
		{"default unknown", []string{"--out", img, "--bundle", b, "--default", "db"}, "no --bundle of that name"},
		{"bundle missing", []string{"--out", img, "--bundle", filepath.Join(dir, "none.thaw")}, "none.thaw: no such file"},
		{"bad name", []string{"--out", img, "--bundle", "a b=" + b}, "letters, digits"},
		{"bad size", []string{"--out", img, "--bundle", b, "--size", "big"}, "--size"},
		{"too small", []string{"--out", img, "--bundle", b, "--size", "100M"}, "the stick needs"},
		{"bad identity", []string{"--out", img, "--bundle", b, "--identity", b}, "--identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, append(append([]string{}, base...), tc.args...)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("err %v, want %q:\n%s", err, tc.want, out)
			}
			if _, err := os.Stat(img); !os.IsNotExist(err) {
				t.Fatalf("%s written despite the refusal", img)
			}
		})
	}
	pack := filepath.Join(dir, "6.1.0-50-cloud-amd64.pack")
	os.WriteFile(pack, []byte("a driver pack"), 0o644)
	out, err := run(t, append(base, "--out", img, "--bundle", b, "--disk", "sda", "--default", "web1", "--pack", pack)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"plan-web1", "* restore-web1", "thaw: restore web1 onto sda", "rescue", "THAWDATA"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// the restore entry, read off the ESP (at 1 MiB) with mtools
	entry, err := exec.Command("mcopy", "-n", "-i", img+"@@1048576", "::/loader/entries/restore-web1.conf", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("mcopy: %v %s", err, entry)
	}
	sum := sha256.Sum256([]byte(strings.Repeat("vmlinuz", 5000)))
	for _, want := range []string{"linux /thaw/vmlinuz\n", "initrd /thaw/initramfs.gz\n", "console=ttyS0,115200 console=tty0 ",
		"thaw.kernel=file:/run/thaw/stick-esp/thaw/vmlinuz#sha256=" + hex.EncodeToString(sum[:]), "thaw.packs=usb:packs ", "thaw.image=usb:web1.thaw thaw.disk=sda\n"} {
		if !strings.Contains(string(entry), want) {
			t.Errorf("restore-web1.conf lacks %q:\n%s", want, entry)
		}
	}
	// the pack, read off the data partition
	l, err := exec.Command("mdir", "-b", "-i", img+"@@"+dataOffset(t, img), "::/packs").CombinedOutput()
	if err != nil || !strings.Contains(string(l), "6.1.0-50-cloud-amd64.pack") {
		t.Errorf("packs/ on the data partition: %v %s", err, l)
	}
}

// dataOffset is the byte offset of the stick image's data partition.
func dataOffset(t *testing.T, img string) string {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tbl, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	parts := tbl.GetPartitions()
	if len(parts) < 2 {
		t.Fatalf("%d partitions", len(parts))
	}
	return strconv.FormatInt(parts[1].GetStart(), 10)
}
