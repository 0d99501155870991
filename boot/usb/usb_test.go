package usb

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/thawlinux/thaw/agent/stick"
)

func writeFile(t *testing.T, dir, name string, n int, seed byte) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t *testing.T, dir string) Config {
	return Config{
		Kernel:      writeFile(t, dir, "vmlinuz", 3<<20, 1),
		Initrd:      writeFile(t, dir, "initrd", 2<<20, 2),
		SystemdBoot: writeFile(t, dir, "sd-boot.efi", 90<<10, 3),
		Bundles:     []Bundle{{Name: "web1.thaw", Path: writeFile(t, dir, "b1", 5<<20+123, 4)}, {Name: "big.thaw", Path: writeFile(t, dir, "b2", 10<<20+5, 5)}},
		Packs:       []string{writeFile(t, dir, "6.1.0-50-cloud-amd64.pack", 800<<10+7, 6)},
		Entries: []Entry{
			{ID: "plan-web1", Title: "plan web1 (writes nothing)", Args: "console=ttyS0 thaw.image=usb:web1.thaw thaw.dryrun=1"},
			{ID: "restore-web1", Title: "restore web1", Args: "console=ttyS0 thaw.image=usb:web1.thaw thaw.disk=vda"},
			{ID: "rescue", Title: "rescue shell", Args: "console=ttyS0 thaw.rescue=1"},
		},
		Timeout: 3,
		Readme:  "thaw stick\n",
	}
}

func TestWrite(t *testing.T) {
	defer func(a, b int64) { partMax, fatFileMax = a, b }(partMax, fatFileMax)
	partMax, fatFileMax = 4<<20, 6<<20 // big.thaw is split in three
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	img := filepath.Join(dir, "stick.img")
	var last int64
	l, err := Write(img, cfg, func(done, total int64) { last = total - done })
	if err != nil {
		t.Fatal(err)
	}
	if last != 0 {
		t.Errorf("progress ended %d bytes short", last)
	}
	fi, _ := os.Stat(img)
	if fi.Size() != l.Size || l.DataStart+l.DataSize+mib > l.Size || l.ESPSize < espMin {
		t.Fatalf("layout %+v, file %d bytes", l, fi.Size())
	}

	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tbl, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	parts := tbl.(*gpt.Table).Partitions
	if len(parts) != 2 || parts[0].Name != stick.ESPLabel || parts[0].Type != gpt.EFISystemPartition || parts[1].Name != stick.DataLabel {
		t.Fatalf("partitions %+v", parts)
	}
	esp, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	if esp.Label() != stick.ESPLabel || strings.TrimSpace(data.Label()) != stick.DataLabel {
		t.Errorf("labels %q %q", esp.Label(), data.Label())
	}
	for _, c := range []struct {
		part int
		path string
		want string // a host file, or text: …
	}{
		{1, "/" + stick.KernelPath, cfg.Kernel},
		{1, "/" + stick.InitrdPath, cfg.Initrd},
		{1, "/EFI/BOOT/BOOTX64.EFI", cfg.SystemdBoot},
		{1, "/loader/loader.conf", "text:default plan-web1.conf\ntimeout 3\nconsole-mode keep\n"},
		{1, "/loader/entries/restore-web1.conf", "text:title restore web1\nlinux /thaw/vmlinuz\ninitrd /thaw/initramfs.gz\noptions console=ttyS0 thaw.image=usb:web1.thaw thaw.disk=vda\n"},
		{2, "/web1.thaw", cfg.Bundles[0].Path},
		{2, "/README.txt", "text:thaw stick\n"},
		{2, "/" + PacksDir + "/6.1.0-50-cloud-amd64.pack", cfg.Packs[0]},
	} {
		fsys := esp
		if c.part == 2 {
			fsys = data
		}
		f, err := fsys.OpenFile(c.path, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%d:%s: %v", c.part, c.path, err)
		}
		got, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		want := []byte(strings.TrimPrefix(c.want, "text:"))
		if !strings.HasPrefix(c.want, "text:") {
			want, _ = os.ReadFile(c.want)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d:%s: %d bytes differ from the %d wanted", c.part, c.path, len(got), len(want))
		}
	}
	// big.thaw in parts that read back as the bundle
	var joined []byte
	for _, p := range []string{"/big.thaw.000", "/big.thaw.001", "/big.thaw.002"} {
		f, err := data.OpenFile(p, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, _ := io.ReadAll(f)
		joined = append(joined, b...)
	}
	if want, _ := os.ReadFile(cfg.Bundles[1].Path); !bytes.Equal(joined, want) {
		t.Errorf("the parts of big.thaw do not join to it")
	}
	if _, err := data.OpenFile("/big.thaw", os.O_RDONLY); err == nil {
		t.Error("big.thaw written whole as well")
	}
	// go-diskfs cannot list an empty directory: mtools does
	out, err := exec.Command("mdir", "-b", "-i", img+"@@"+strconv.FormatInt(l.DataStart, 10), "::/"+stick.LogDir).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("%s: %v %q", stick.LogDir, err, out)
	}
	fsck(t, img, l)
}

// fsck runs dosfstools' checker, read-only, on both filesystems.
func fsck(t *testing.T, img string, l Layout) {
	if _, err := exec.LookPath("fsck.vfat"); err != nil {
		t.Fatalf("fsck.vfat: %v (scripts/deps.sh installs dosfstools)", err)
	}
	for _, p := range []struct{ off, size int64 }{{l.ESPStart, l.ESPSize}, {l.DataStart, l.DataSize}} {
		src, _ := os.Open(img)
		part := filepath.Join(t.TempDir(), "part")
		dst, _ := os.Create(part)
		io.Copy(dst, io.NewSectionReader(src, p.off, p.size))
		src.Close()
		dst.Close()
		if out, err := exec.Command("fsck.vfat", "-n", "-v", part).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat at %d: %v\n%s", p.off, err, out)
		}
	}
}

func TestPlanRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		size int64
		want string
	}{
		{"no loader", func(c *Config) { c.SystemdBoot = "" }, 0, "would not boot"},
		{"bad name", func(c *Config) { c.Bundles[0].Name = "../x" }, 0, "letters, digits"},
		{"same name", func(c *Config) { c.Bundles[1].Name = "WEB1.thaw" }, 0, "two bundles are named"},
		{"missing bundle", func(c *Config) { c.Bundles[0].Path = filepath.Join(dir, "none") }, 0, "no such file"},
		{"not a pack", func(c *Config) { c.Packs = []string{c.Bundles[0].Path} }, 0, "RELEASE.pack"},
		{"a pack twice", func(c *Config) { c.Packs = append(c.Packs, c.Packs[0]) }, 0, "once"},
		{"missing pack", func(c *Config) { c.Packs = []string{filepath.Join(dir, "none.pack")} }, 0, "no such file"},
		{"too small", func(c *Config) { c.Size = 100 << 20 }, 0, "the stick needs"},
		{"device too small", func(c *Config) {}, 50 << 20, "and has 50 MiB"},
		{"unknown default", func(c *Config) { c.Default = "restore-db" }, 0, "not in the menu"},
		{"half of BIOS", func(c *Config) { c.Syslinux = "/usr/bin/syslinux" }, 0, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t, t.TempDir())
			tc.edit(&c)
			if _, err := Plan(c, tc.size); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	// a refused write leaves no file behind
	c := testConfig(t, dir)
	c.Default = "nothing"
	img := filepath.Join(dir, "stick.img")
	if _, err := Write(img, c, nil); err == nil {
		t.Fatal("written")
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("%s exists after a refusal: %v", img, err)
	}
	// an existing file is not overwritten
	os.WriteFile(img, []byte("keep"), 0o644)
	if _, err := Write(img, testConfig(t, dir), nil); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(img); string(b) != "keep" {
		t.Error("the existing file was changed")
	}
}

func TestGrowsToSize(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, dir)
	c.Size = 1 << 30
	l, err := Plan(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Size != 1<<30 || l.DataStart+l.DataSize != 1<<30-mib {
		t.Errorf("layout %+v: the data partition should fill the stick", l)
	}
}

func TestSyslinux(t *testing.T) {
	if _, err := exec.LookPath(SyslinuxBin); err != nil {
		t.Fatalf("%v (scripts/deps.sh installs syslinux)", err)
	}
	dir := t.TempDir()
	c := testConfig(t, dir)
	c.Syslinux, c.GPTMBR = SyslinuxBin, SyslinuxGPTMBR
	img := filepath.Join(dir, "stick.img")
	l, err := Write(img, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(img)
	mbr, _ := os.ReadFile(SyslinuxGPTMBR)
	if !bytes.Equal(b[:len(mbr)], mbr) || b[510] != 0x55 || b[511] != 0xaa {
		t.Error("gptmbr.bin is not the MBR's boot code, or the signature is gone")
	}
	d, _ := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	defer d.Close()
	tbl, _ := d.GetPartitionTable()
	if a := tbl.(*gpt.Table).Partitions[0].Attributes; a&(1<<2) == 0 {
		t.Errorf("ESP attributes %#x: not legacy BIOS bootable", a)
	}
	esp, _ := d.GetFilesystem(1)
	if _, err := esp.OpenFile("/syslinux/ldlinux.sys", os.O_RDONLY); err != nil {
		t.Errorf("ldlinux.sys: %v", err)
	}
	f, err := esp.OpenFile("/syslinux/syslinux.cfg", os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(f)
	if !strings.Contains(string(cfg), "DEFAULT plan-web1\n") || !strings.Contains(string(cfg), "LABEL restore-web1\n  LINUX /thaw/vmlinuz\n  INITRD /thaw/initramfs.gz\n  APPEND console=ttyS0 thaw.image=usb:web1.thaw thaw.disk=vda\n") {
		t.Errorf("syslinux.cfg:\n%s", cfg)
	}
	fsck(t, img, l)
}
