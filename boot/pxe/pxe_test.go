package pxe

import (
	"strings"
	"testing"
)

func TestScript(t *testing.T) {
	good := Config{KernelURL: "http://10.0.2.2:80/vmlinuz", InitrdURL: "http://10.0.2.2:80/initramfs.cpio.gz", Args: []string{"console=ttyS0", "thaw.image=http://10.0.2.2/s.thaw#sha256=00"}}
	s, err := Script(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!ipxe\n", "\nkernel http://10.0.2.2:80/vmlinuz console=ttyS0 thaw.image=http://10.0.2.2/s.thaw#sha256=00 initrd=initramfs.cpio.gz || goto failed\n", "\ninitrd http://10.0.2.2:80/initramfs.cpio.gz || goto failed\nboot\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	for name, c := range map[string]Config{
		"space in arg":   {KernelURL: good.KernelURL, InitrdURL: good.InitrdURL, Args: []string{"a b"}},
		"variable":       {KernelURL: good.KernelURL, InitrdURL: good.InitrdURL, Args: []string{"x=${net0/ip}"}},
		"not a URL":      {KernelURL: "/srv/vmlinuz", InitrdURL: good.InitrdURL},
		"newline in URL": {KernelURL: good.KernelURL + "\nshell", InitrdURL: good.InitrdURL},
		"comment":        {KernelURL: good.KernelURL, InitrdURL: good.InitrdURL, Args: []string{"#x"}},
		"separator":      {KernelURL: good.KernelURL, InitrdURL: good.InitrdURL, Args: []string{"||"}},
	} {
		if _, err := Script(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
