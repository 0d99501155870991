package prepare

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thawlinux/thaw/agent/dm"
	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/manifest"
)

// plainServer is a server as the Debian installer leaves it: root on vda1,
// swap on vda2.
func plainServer() *manifest.Manifest {
	return &manifest.Manifest{
		Disks: []manifest.Disk{{Name: "vda", Dev: "254:0", DiskGUID: "d1", Partitions: []manifest.Partition{
			{Number: 1, Name: "vda1", Dev: "254:1", PartUUID: "11111111-1111-4111-8111-111111111111"},
			{Number: 2, Name: "vda2", Dev: "254:2", PartUUID: "22222222-2222-4222-8222-222222222222"},
		}}},
		Mounts: []manifest.Mount{{Target: "/", Source: "/dev/vda1", FSType: "ext4", Dev: "254:1"}},
		Swaps:  []manifest.Swap{{Path: "/dev/vda2", Type: "partition"}},
	}
}

// preparedServer is plainServer after thaw prepare and a reboot.
func preparedServer() *manifest.Manifest {
	m := plainServer()
	m.DM = []manifest.DMDevice{
		{Name: "thaw-root", Dev: "253:0", Table: "0 100 linear 254:1 0", Slaves: []string{"vda1"}},
		{Name: "thaw-swap0", Dev: "253:1", Table: "0 100 linear 254:2 0", Slaves: []string{"vda2"}},
	}
	m.Mounts[0].Dev, m.Mounts[0].Source = "253:0", "/dev/mapper/thaw-root"
	m.Swaps[0].Path = "/dev/dm-1"
	return m
}

func TestEntries(t *testing.T) {
	lvmBoot := plainServer()
	lvmBoot.Mounts = []manifest.Mount{
		{Target: "/", Dev: "253:0"},
		{Target: "/boot", Dev: "254:1"},
		{Target: "/srv/bind", Dev: "254:1"}, // a bind mount of /boot's filesystem
	}
	lvmBoot.Swaps = []manifest.Swap{{Path: "/dev/dm-1"}}
	noUUID := plainServer()
	noUUID.Disks[0].Partitions[0].PartUUID = ""
	wholeDisk := plainServer()
	wholeDisk.Mounts[0].Dev = "254:0"
	tests := []struct {
		name string
		m    *manifest.Manifest
		want []Entry
		err  string
	}{
		{"plain root and swap", plainServer(), []Entry{
			{"thaw-root", "11111111-1111-4111-8111-111111111111", "vda1", "/"},
			{"thaw-swap0", "22222222-2222-4222-8222-222222222222", "vda2", "swap"}}, ""},
		{"already on dm", preparedServer(), nil, ""},
		{"/boot on a partition beside LVM", lvmBoot, []Entry{{"thaw-boot", "11111111-1111-4111-8111-111111111111", "vda1", "/boot"}}, ""},
		{"no PARTUUID", noUUID, nil, "no PARTUUID"},
		{"root on a whole disk", wholeDisk, nil, "whole disk /dev/vda"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := entries(tc.m)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("entries = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestDMName(t *testing.T) {
	for in, want := range map[string]string{"/": "thaw-root", "/boot": "thaw-boot", "/boot/efi": "thaw-boot-efi", "/srv/my data/": "thaw-srv-my-data"} {
		if got := dmName(in); got != want {
			t.Errorf("dmName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckFstab(t *testing.T) {
	es := []Entry{
		{"thaw-root", "11111111-1111-4111-8111-111111111111", "vda1", "/"},
		{"thaw-swap0", "22222222-2222-4222-8222-222222222222", "vda2", "swap"},
		{"thaw-boot", "33333333-3333-4333-8333-333333333333", "vda3", "/boot"},
	}
	m := plainServer()
	m.Disks[0].Partitions = append(m.Disks[0].Partitions, manifest.Partition{Number: 3, Name: "vda3", PartUUID: "33333333-3333-4333-8333-333333333333"})
	resolve := func(s string) string { return strings.TrimPrefix(s, "/dev/") }
	tests := []struct {
		name, fstab string
		refused     []string // the Use of each refused entry
	}{
		{"by UUID", "UUID=a / ext4 defaults 0 1\nUUID=b none swap sw 0 0\nLABEL=boot /boot ext2 defaults 0 2\n", nil},
		{"root by partition is fine", "/dev/vda1 / ext4 defaults 0 1\nUUID=b none swap sw 0 0\n/dev/disk/by-uuid/c /boot ext2 defaults 0 2\n", nil},
		{"swap by PARTUUID", "UUID=a / ext4 defaults 0 1\nPARTUUID=22222222-2222-4222-8222-222222222222 none swap sw 0 0\n", []string{"swap"}},
		{"swap by path", "UUID=a / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n", []string{"swap"}},
		{"another swap by path", "/dev/vdb1 none swap sw 0 0\n", nil},
		{"/boot by path", "# comment\n/dev/vda3 /boot ext2 defaults 0 2\n", []string{"/boot"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range checkFstab(tc.fstab, es, m, resolve) {
				if r.Check != "fstab" {
					t.Errorf("check %q", r.Check)
				}
				for _, e := range es {
					if strings.Contains(r.Reason, "names "+e.Use+" ") {
						got = append(got, e.Use)
					}
				}
			}
			if !reflect.DeepEqual(got, tc.refused) {
				t.Errorf("refused %v, want %v", got, tc.refused)
			}
		})
	}
}

// testHost is a Host over a temporary root with initramfs-tools.
func testHost(t *testing.T, m *manifest.Manifest, fstab string) (*Host, *[]string) {
	root := t.TempDir()
	for p, body := range map[string]string{"usr/sbin/update-initramfs": "#!/bin/sh\n", "etc/fstab": fstab, "thaw": "THAW BINARY"} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var runs []string
	h := &Host{Root: root, Executable: filepath.Join(root, "thaw"),
		Probe: func() (*manifest.Manifest, error) { return m, nil },
		Run: func(name string, args ...string) error {
			runs = append(runs, name+" "+strings.Join(args, " "))
			return nil
		}}
	return h, &runs
}

const plainFstab = "UUID=a / ext4 errors=remount-ro 0 1\nUUID=b none swap sw 0 0\n"

func TestInstallUndo(t *testing.T) {
	h, runs := testHost(t, plainServer(), plainFstab)
	es, changed, err := Install(h)
	if err != nil || !changed || len(es) != 2 {
		t.Fatalf("Install: %v changed=%v %+v", err, changed, es)
	}
	for _, rel := range Installed {
		if _, err := os.Stat(filepath.Join(h.Root, rel)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(h.Root, ConfPath))
	if got := parseConf(string(b)); len(got) != 2 || got[0].Name != "thaw-root" || got[1].PartUUID != es[1].PartUUID {
		t.Errorf("conf %q reads back as %+v", b, got)
	}
	if bin, _ := os.ReadFile(filepath.Join(h.Root, BinaryPath)); string(bin) != "THAW BINARY" {
		t.Errorf("binary %q", bin)
	}
	if want := []string{"update-initramfs -u -k all"}; !reflect.DeepEqual(*runs, want) {
		t.Errorf("ran %v, want %v", *runs, want)
	}
	// Idempotent: the second run changes nothing and rebuilds nothing.
	if _, changed, err := Install(h); err != nil || changed || len(*runs) != 1 {
		t.Errorf("second Install: %v changed=%v runs %v", err, changed, *runs)
	}
	st, err := Check(h)
	if err != nil || st.Movable || !st.Installed || len(st.Why) != 2 {
		t.Errorf("Check before the reboot: %+v %v", st, err)
	}
	removed, err := Undo(h)
	if err != nil || len(removed) != len(Installed) || len(*runs) != 2 {
		t.Fatalf("Undo: %v %v runs %v", removed, err, *runs)
	}
	for _, rel := range Installed {
		if _, err := os.Stat(filepath.Join(h.Root, rel)); err == nil {
			t.Errorf("/%s left after Undo", rel)
		}
	}
	if removed, err := Undo(h); err != nil || removed != nil || len(*runs) != 2 {
		t.Errorf("second Undo: %v %v runs %v", removed, err, *runs)
	}
}

func TestInstallRefusesWritingNothing(t *testing.T) {
	tests := []struct {
		name   string
		fstab  string
		remove string
		check  string
	}{
		{"swap by PARTUUID", "UUID=a / ext4 defaults 0 1\nPARTUUID=22222222-2222-4222-8222-222222222222 none swap sw 0 0\n", "", "fstab"},
		{"no initramfs-tools", plainFstab, "usr/sbin/update-initramfs", "initramfs"},
		{"no binary", plainFstab, "thaw", "binary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, runs := testHost(t, plainServer(), tc.fstab)
			if tc.remove != "" {
				os.Remove(filepath.Join(h.Root, tc.remove))
			}
			_, _, err := Install(h)
			var r *plan.Refused
			if !errors.As(err, &r) || len(r.Refusals) == 0 || r.Refusals[0].Check != plan.Check(tc.check) {
				t.Fatalf("Install: %v, want a %q refusal", err, tc.check)
			}
			for _, rel := range Installed {
				if _, err := os.Stat(filepath.Join(h.Root, rel)); err == nil {
					t.Errorf("/%s written despite the refusal", rel)
				}
			}
			if len(*runs) != 0 {
				t.Errorf("ran %v despite the refusal", *runs)
			}
		})
	}
}

func TestCheckPrepared(t *testing.T) {
	h, _ := testHost(t, preparedServer(), plainFstab)
	st, err := Check(h)
	if err != nil || !st.Movable || !reflect.DeepEqual(st.Wrapped, []string{"thaw-root", "thaw-swap0"}) || st.Installed {
		t.Fatalf("Check = %+v, %v", st, err)
	}
	h, _ = testHost(t, plainServer(), plainFstab)
	st, _ = Check(h)
	if st.Movable || len(st.Entries) != 2 {
		t.Fatalf("Check of the plain server = %+v", st)
	}
}

// fakeMapper records the device-mapper calls of Wrap.
type fakeMapper struct {
	calls []string
	n     uint32
	fail  string
}

func (f *fakeMapper) Create(name, uuid string) (dm.Info, error) {
	f.calls = append(f.calls, "create "+name+" "+uuid)
	if name == f.fail {
		return dm.Info{}, errors.New("EBUSY")
	}
	f.n++
	d, _ := dm.ParseDev("253:" + string(rune('0'+f.n-1)))
	return dm.Info{Name: name, Dev: d}, nil
}
func (f *fakeMapper) Load(name string, t []dm.Target, ro bool) error {
	f.calls = append(f.calls, "load "+name+" "+dm.FormatTable(t))
	return nil
}
func (f *fakeMapper) ResumeUdev(name string) error {
	f.calls = append(f.calls, "resume "+name)
	return nil
}
func (f *fakeMapper) Remove(name string) error {
	f.calls = append(f.calls, "remove "+name)
	return nil
}

func TestWrap(t *testing.T) {
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	for part, v := range map[string][2]string{"vda1": {"254:1", "3145728"}, "vda2": {"254:2", "1228800"}} {
		p := filepath.Join(sys, "class", "block", part)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "dev"), []byte(v[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(p, "size"), []byte(v[1]+"\n"), 0o644)
		os.WriteFile(filepath.Join(p, "partition"), []byte("1\n"), 0o644)
	}
	os.MkdirAll(filepath.Join(sys, "class", "block", "vda"), 0o755) // a whole disk
	f := &fakeMapper{}
	b := &Initramfs{Sys: sys, Dev: dev, DM: f}
	err := b.Wrap([]string{"thaw-root=/dev/vda1", "thaw-swap0=/dev/vda2", "thaw-x=/dev/vda", "bad"})
	if err == nil || !strings.Contains(err.Error(), "vda is not a partition") || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("Wrap error %v, want the whole disk and the bad argument named", err)
	}
	want := []string{
		"create thaw-root THAW-thaw-root", "load thaw-root 0 3145728 linear 254:1 0", "resume thaw-root",
		"create thaw-swap0 THAW-thaw-swap0", "load thaw-swap0 0 1228800 linear 254:2 0", "resume thaw-swap0",
	}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", f.calls, want)
	}
	if l, err := os.Readlink(filepath.Join(dev, "mapper", "thaw-swap0")); err != nil || l != "../dm-1" {
		t.Errorf("/dev/mapper/thaw-swap0 → %q, %v", l, err)
	}
}

func FuzzParseFstab(f *testing.F) {
	f.Add(plainFstab)
	f.Add("/dev/disk/by-label/my\\040disk /srv\\040x ext4 defaults 0 2\n\\")
	f.Fuzz(func(t *testing.T, s string) {
		for _, e := range parseFstab(s) {
			_ = byContent(e.spec)
		}
		for _, e := range parseConf(s) {
			if e.Name == "" || e.PartUUID == "" {
				t.Fatalf("empty field in %+v", e)
			}
		}
	})
}

// Review findings: a second run after the reboot keeps what the first
// wrapped; a failed update-initramfs is finished by the next run; two
// mount points that map to one name get two devices.
func TestInstallAgain(t *testing.T) {
	h, runs := testHost(t, plainServer(), plainFstab)
	if _, _, err := Install(h); err != nil {
		t.Fatal(err)
	}
	// Rebooted: root and swap on thaw-*; a new /root partition appears.
	m := preparedServer()
	m.Disks[0].Partitions = append(m.Disks[0].Partitions, manifest.Partition{Number: 3, Name: "vda3", Dev: "254:3", PartUUID: "33333333-3333-4333-8333-333333333333"})
	m.Mounts = append(m.Mounts, manifest.Mount{Target: "/root", Dev: "254:3"})
	h.Probe = func() (*manifest.Manifest, error) { return m, nil }
	es, changed, err := Install(h)
	if err != nil || !changed {
		t.Fatalf("second Install: %v changed=%v", err, changed)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	if want := []string{"thaw-root", "thaw-swap0", "thaw-root-2"}; !reflect.DeepEqual(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	// update-initramfs fails: the next run, with nothing else to change,
	// runs it again.
	n := len(*runs)
	h.Run = func(name string, args ...string) error {
		*runs = append(*runs, name)
		return errors.New("no space left")
	}
	os.WriteFile(filepath.Join(h.Root, "thaw"), []byte("THAW BINARY v2"), 0o755)
	if _, _, err := Install(h); err == nil {
		t.Fatal("a failed update-initramfs was not reported")
	}
	h.Run = func(name string, args ...string) error { *runs = append(*runs, name); return nil }
	if _, changed, err := Install(h); err != nil || !changed || len(*runs) != n+2 {
		t.Errorf("the run after a failed update-initramfs: %v changed=%v runs %v", err, changed, (*runs)[n:])
	}
	if _, changed, _ := Install(h); changed {
		t.Error("a third run changed something")
	}
	// Undo whose update-initramfs fails is finished by the next undo.
	h.Run = func(name string, args ...string) error { return errors.New("no space left") }
	if _, err := Undo(h); err == nil {
		t.Fatal("a failed update-initramfs was not reported")
	}
	ran := false
	h.Run = func(name string, args ...string) error { ran = true; return nil }
	if _, err := Undo(h); err != nil || !ran {
		t.Errorf("the undo after a failed one: %v, ran %v", err, ran)
	}
}
