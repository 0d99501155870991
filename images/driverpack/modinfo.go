package driverpack

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ParseModinfo reads a module object file's .modinfo section (the
// NUL-separated key=value records that modpost and MODULE_*() put there).
// The name and vermagic must be present.
func ParseModinfo(ko []byte) (Modinfo, error) {
	var mi Modinfo
	if len(ko) > MaxModule {
		return mi, fmt.Errorf("module: %d bytes, at most %d allowed", len(ko), MaxModule)
	}
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return mi, fmt.Errorf("module: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_REL {
		return mi, fmt.Errorf("module: ELF type %v, a module is ET_REL", f.Type)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return mi, errors.New("module: no .modinfo section")
	}
	if s.Type == elf.SHT_NOBITS || s.Size > uint64(len(ko)) {
		return mi, fmt.Errorf("module: .modinfo at offset %d: %d bytes in a %d-byte file", s.Offset, s.Size, len(ko))
	}
	b, err := s.Data()
	if err != nil {
		return mi, fmt.Errorf("module: .modinfo at offset %d: %w", s.Offset, err)
	}
	kv := splitModinfo(b)
	first := func(k string) string {
		if v := kv[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mi.Name, mi.Vermagic, mi.License = first("name"), first("vermagic"), first("license")
	mi.Aliases = kv["alias"]
	for _, d := range strings.Split(first("depends"), ",") {
		if d != "" {
			mi.Depends = append(mi.Depends, d)
		}
	}
	slices.Sort(mi.Depends)
	mi.Depends = slices.Compact(mi.Depends)
	if !validName(mi.Name) {
		return mi, fmt.Errorf("module: .modinfo at offset %d: name %q", s.Offset, mi.Name)
	}
	if mi.Vermagic == "" {
		return mi, fmt.Errorf("module %s: .modinfo at offset %d has no vermagic", mi.Name, s.Offset)
	}
	return mi, nil
}
