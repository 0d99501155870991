package stick

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/images/manifest"
)

// fakeSys builds /sys/class/block with the given partitions: disk, name,
// GPT name.
func fakeSys(t *testing.T, parts [][3]string) string {
	t.Helper()
	sys := t.TempDir()
	addParts(t, sys, parts)
	return sys
}

func addParts(t *testing.T, sys string, parts [][3]string) {
	t.Helper()
	devs := filepath.Join(sys, "devices", "pci0000:00", "usb1", "block")
	class := filepath.Join(sys, "class", "block")
	if err := os.MkdirAll(class, 0o755); err != nil {
		t.Fatal(err)
	}
	disks := map[string]bool{}
	for _, p := range parts {
		disk, name, label := p[0], p[1], p[2]
		if !disks[disk] {
			disks[disk] = true
			d := filepath.Join(devs, disk)
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "uevent"), []byte("DEVNAME="+disk+"\nDEVTYPE=disk\n"), 0o644)
			os.Symlink(d, filepath.Join(class, disk))
		}
		d := filepath.Join(devs, disk, name)
		os.MkdirAll(d, 0o755)
		ue := "MAJOR=8\nDEVNAME=" + name + "\nDEVTYPE=partition\n"
		if label != "" {
			ue += "PARTNAME=" + label + "\n"
		}
		os.WriteFile(filepath.Join(d, "uevent"), []byte(ue), 0o644)
		os.Symlink(d, filepath.Join(class, name))
	}
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		parts   [][3]string
		want    Stick
		wantErr string
	}{
		{"stick", [][3]string{{"vda", "vda1", "root"}, {"sda", "sda1", ESPLabel}, {"sda", "sda2", DataLabel}}, Stick{Disk: "sda", Data: "/dev/sda2", ESP: "/dev/sda1"}, ""},
		{"data only", [][3]string{{"sdb", "sdb1", DataLabel}}, Stick{Disk: "sdb", Data: "/dev/sdb1"}, ""},
		{"esp of another disk", [][3]string{{"sda", "sda1", ESPLabel}, {"sdb", "sdb1", DataLabel}}, Stick{Disk: "sdb", Data: "/dev/sdb1"}, ""},
		{"two sticks", [][3]string{{"sda", "sda2", DataLabel}, {"sdb", "sdb2", DataLabel}}, Stick{}, "attach one thaw stick only"},
		{"none", [][3]string{{"vda", "vda1", "THAWDATA2"}}, Stick{}, "no partition named"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := fakeSys(t, tc.parts)
			rescans := 0
			s, err := Find(context.Background(), sys, 1500*time.Millisecond, func() { rescans++ })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if tc.name == "none" && (!errors.Is(err, ErrNotFound) || rescans == 0) {
					t.Errorf("err %v rescans %d: want ErrNotFound after a rescan", err, rescans)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *s != tc.want {
				t.Errorf("got %+v, want %+v", *s, tc.want)
			}
		})
	}
}

func TestFindAppearsLater(t *testing.T) {
	sys := fakeSys(t, nil)
	n := 0
	s, err := Find(context.Background(), sys, 10*time.Second, func() {
		if n++; n == 2 {
			// the USB disk shows up after the second rescan
			addParts(t, sys, [][3]string{{"sda", "sda2", DataLabel}})
		}
	})
	if err != nil || s.Data != "/dev/sda2" {
		t.Fatalf("got %+v, %v", s, err)
	}
}

func TestFindCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Find(ctx, fakeSys(t, nil), time.Minute, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestIsMedium(t *testing.T) {
	for _, tc := range []struct {
		labels []string
		want   bool
	}{
		{[]string{ESPLabel, DataLabel}, true},
		{[]string{DataLabel}, true},
		{[]string{"EFI", "root"}, false},
		{nil, false},
	} {
		d := manifest.Disk{Name: "sda"}
		for i, l := range tc.labels {
			d.Partitions = append(d.Partitions, manifest.Partition{Number: i + 1, Label: l})
		}
		if got := IsMedium(d); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.labels, got, tc.want)
		}
	}
}

func TestLogName(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 15, 0, 0, time.UTC)
	for _, tc := range []struct{ image, outcome, want string }{
		{"/run/thaw/stick/web1.thaw", "refused", "20261202-101500-web1-refused.log"},
		{"usb:my server.thaw", "handed-over", "20261202-101500-my_server-handed-over.log"},
	} {
		got := LogName(at, tc.image, tc.outcome)
		if got != tc.want || !logName.MatchString(got) {
			t.Errorf("%q: %q, want %q", tc.image, got, tc.want)
		}
	}
}
