package usb

import (
	"fmt"
	"strings"

	"github.com/thawlinux/thaw/agent/stick"
)

// LoaderConf is systemd-boot's loader/loader.conf.
func LoaderConf(cfg Config) string {
	var b strings.Builder
	if def := defaultEntry(cfg); def != "" {
		fmt.Fprintf(&b, "default %s.conf\n", def)
	}
	fmt.Fprintf(&b, "timeout %d\n", cfg.Timeout)
	b.WriteString("console-mode keep\n")
	return b.String()
}

// LoaderEntry is one loader/entries/ID.conf.
func LoaderEntry(e Entry) string {
	return fmt.Sprintf("title %s\nlinux /%s\ninitrd /%s\noptions %s\n", e.Title, stick.KernelPath, stick.InitrdPath, e.Args)
}

// SyslinuxCfg is syslinux/syslinux.cfg: a prompt listing the labels,
// without menu modules.
func SyslinuxCfg(cfg Config) string {
	var b strings.Builder
	def := defaultEntry(cfg)
	fmt.Fprintf(&b, "DEFAULT %s\nPROMPT 1\nTIMEOUT %d\n", def, max(cfg.Timeout, 1)*10)
	b.WriteString("SAY thaw recovery stick. Type a label and Enter (Tab lists them):\n")
	for _, e := range cfg.Entries {
		fmt.Fprintf(&b, "SAY   %-22s %s\n", e.ID, e.Title)
	}
	fmt.Fprintf(&b, "SAY Default in %d s: %s\n", max(cfg.Timeout, 1), def)
	for _, e := range cfg.Entries {
		fmt.Fprintf(&b, "LABEL %s\n  LINUX /%s\n  INITRD /%s\n  APPEND %s\n", e.ID, stick.KernelPath, stick.InitrdPath, e.Args)
	}
	return b.String()
}

// defaultEntry is Config.Default, or the first entry.
func defaultEntry(cfg Config) string {
	if cfg.Default == "" && len(cfg.Entries) > 0 {
		return cfg.Entries[0].ID
	}
	return cfg.Default
}
