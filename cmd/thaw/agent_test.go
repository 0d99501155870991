package main

import (
	"testing"

	"github.com/thawlinux/thaw/netfetch/bootparam"
)

func TestWithStage2(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"console=ttyS0 thaw.image=http://x/b", "console=ttyS0 thaw.image=http://x/b thaw.stage=2"},
		{"a -- init-arg", "a thaw.stage=2 -- init-arg"},
		{"a --", "a thaw.stage=2 --"},
	} {
		got := withStage2(c.in)
		if got != c.want {
			t.Errorf("withStage2(%q) = %q, want %q", c.in, got, c.want)
		}
		p, err := bootparam.Parse(got)
		if err != nil || p.Stage != 2 {
			t.Errorf("%q parses to stage %v, %v", got, p, err)
		}
	}
}

func TestImageCmdline(t *testing.T) {
	got := imageCmdline("BOOT_IMAGE=/vmlinuz root=UUID=1 ro resume=/dev/vda2 resume_offset=8 console=ttyS0 noresume", []string{"resume=PARTUUID=2"})
	if want := "root=UUID=1 ro console=ttyS0 resume=PARTUUID=2"; got != want {
		t.Errorf("imageCmdline = %q, want %q", got, want)
	}
}
