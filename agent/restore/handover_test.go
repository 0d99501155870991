package restore

import (
	"slices"
	"testing"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/netfetch/bootparam"
)

func TestWithStage2(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"console=ttyS0 thaw.image=http://x/b", "console=ttyS0 thaw.image=http://x/b thaw.stage=2 iomem=relaxed"},
		{"a -- init-arg", "a thaw.stage=2 iomem=relaxed -- init-arg"},
		{"a --", "a thaw.stage=2 iomem=relaxed --"},
		{"a iomem=relaxed", "a iomem=relaxed thaw.stage=2"},
	} {
		got := WithStage2(c.in)
		if got != c.want {
			t.Errorf("WithStage2(%q) = %q, want %q", c.in, got, c.want)
		}
		p, err := bootparam.Parse(got)
		if err != nil || p.Stage != 2 {
			t.Errorf("%q parses to stage %v, %v", got, p, err)
		}
	}
}

func TestImageCmdline(t *testing.T) {
	got := ImageCmdline("BOOT_IMAGE=/vmlinuz root=UUID=1 ro resume=/dev/vda2 resume_offset=8 console=ttyS0 noresume", []string{"resume=PARTUUID=2"})
	if want := "root=UUID=1 ro console=ttyS0 resume=PARTUUID=2"; got != want {
		t.Errorf("imageCmdline = %q, want %q", got, want)
	}
}

func TestReleaseList(t *testing.T) {
	pl := &plan.Plan{Devices: []plan.Device{
		{Kind: "disk", Action: plan.Redirect, Target: &plan.DeviceEnd{PCI: "0000:00:06.0"}},
		{Kind: "disk", Action: plan.Keep, Target: &plan.DeviceEnd{PCI: "0000:00:04.0"}},
		{Kind: "disk", Action: plan.Redirect, Target: &plan.DeviceEnd{PCI: "0000:00:06.0"}}, // a second disk on the same HBA
		{Kind: "nic", Action: plan.Rebind, Target: &plan.DeviceEnd{PCI: "0000:00:0a.0"}},
		{Kind: "nic", Action: plan.None, Target: &plan.DeviceEnd{PCI: "0000:00:0b.0"}},
		{Kind: "disk", Action: plan.Refuse},
	}}
	if got, want := releaseList(pl), []string{"0000:00:06.0", "0000:00:0a.0"}; !slices.Equal(got, want) {
		t.Errorf("releaseList = %q, want %q", got, want)
	}
}
