package pxe

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fakeInputs makes an agent directory and an iPXE directory.
func fakeInputs(t *testing.T) (agent, ipxe string) {
	agent, ipxe = t.TempDir(), t.TempDir()
	for dir, names := range map[string][]string{agent: {"vmlinuz", "initramfs.cpio.gz"}, ipxe: {BIOSLoader, UEFILoader}} {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("content of "+n), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return agent, ipxe
}

func TestWriteTree(t *testing.T) {
	agent, ipxe := fakeInputs(t)
	dir := t.TempDir()
	tr := Tree{URL: "http://10.0.0.5:8080/boot/", Subnet: "10.0.0.0", Interface: "eth1", AgentDir: agent, IPXEDir: ipxe,
		Args: []string{"console=ttyS0", "thaw.image=http://10.0.0.5:8080/s.thaw", "thaw.disk=sda"}}
	wrote, err := Write(dir, tr)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrote) != 6 {
		t.Errorf("wrote %q", wrote)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, wants := range map[string][]string{
		ScriptName: {"#!ipxe\n", "chain --autofree http://10.0.0.5:8080/boot/machines/${net0/mac:hexhyp}.ipxe || goto default\n:default\n",
			"kernel http://10.0.0.5:8080/boot/vmlinuz console=ttyS0 thaw.image=http://10.0.0.5:8080/s.thaw thaw.disk=sda thaw.kernel=http://10.0.0.5:8080/boot/vmlinuz#sha256=" + sha("content of vmlinuz") + " initrd=initramfs.cpio.gz || goto failed\n",
			"initrd http://10.0.0.5:8080/boot/initramfs.cpio.gz"},
		DnsmasqConf: {"\nport=0\n", "\ndhcp-range=10.0.0.0,proxy\n", "\ninterface=eth1\n", "\ntftp-root=" + filepath.Join(dir, "tftp") + "\n",
			"dhcp-match=set:ipxe,175\n", `pxe-service=tag:!ipxe,x86PC,"thaw restore agent (BIOS)",undionly.kpxe`,
			`pxe-service=tag:!ipxe,X86-64_EFI,"thaw restore agent (UEFI)",ipxe.efi`, "\ndhcp-boot=tag:ipxe,http://10.0.0.5:8080/boot/boot.ipxe,,10.0.0.5\n"},
		"vmlinuz":            {"content of vmlinuz"},
		"tftp/undionly.kpxe": {"content of undionly.kpxe"},
		"tftp/ipxe.efi":      {"content of ipxe.efi"},
	} {
		got := read(name)
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s lacks %q:\n%s", name, w, got)
			}
		}
	}
	if strings.Count(read(ScriptName), "#!ipxe") != 1 {
		t.Errorf("two script headers:\n%s", read(ScriptName))
	}

	// A machine of its own: only its script is written.
	tr.MAC, tr.Args = "52:54:00:12:34:56", []string{"console=ttyS0", "thaw.disk=vdb"}
	wrote, err = Write(dir, tr)
	if err != nil || len(wrote) != 1 || wrote[0] != "machines/52-54-00-12-34-56.ipxe" {
		t.Fatalf("machine script: %q %v", wrote, err)
	}
	if got := read(wrote[0]); !strings.Contains(got, "thaw.disk=vdb") || strings.Contains(got, "chain") {
		t.Errorf("machine script:\n%s", got)
	}
	if !strings.Contains(read(ScriptName), "thaw.disk=sda") {
		t.Error("the machine's script replaced the default")
	}
}

// TestWriteTreeRefuses: a bad input writes nothing at all.
func TestWriteTreeRefuses(t *testing.T) {
	agent, ipxe := fakeInputs(t)
	good := Tree{URL: "http://10.0.0.5/boot/", Subnet: "10.0.0.0", AgentDir: agent, IPXEDir: ipxe, Args: []string{"console=ttyS0"}}
	for name, mod := range map[string]func(*Tree){
		"no trailing slash": func(tr *Tree) { tr.URL = "http://10.0.0.5/boot" },
		"not http":          func(tr *Tree) { tr.URL = "tftp://10.0.0.5/boot/" },
		"subnet":            func(tr *Tree) { tr.Subnet = "10.0.0" },
		"interface":         func(tr *Tree) { tr.Interface = "eth0\ndhcp-range=0.0.0.0" },
		"no agent":          func(tr *Tree) { tr.AgentDir = t.TempDir() },
		"no ipxe":           func(tr *Tree) { tr.IPXEDir = t.TempDir() },
		"arg with space":    func(tr *Tree) { tr.Args = []string{"a b"} },
		"bad mac":           func(tr *Tree) { tr.MAC = "52:54:00" },
		"server by name":    func(tr *Tree) { tr.URL = "http://boot.example/boot/" },
	} {
		tr := good
		mod(&tr)
		dir := t.TempDir()
		if _, err := Write(dir, tr); err == nil {
			t.Errorf("%s: no error", name)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: wrote %d entries", name, len(ents))
		}
	}
}
