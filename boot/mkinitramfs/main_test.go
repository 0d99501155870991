package main

import (
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Every command built into the initramfs must be imported by boot/tools.go,
// or go mod tidy drops its dependencies and the u-root build fails.
func TestToolsListsCommands(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../tools.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		if c, ok := strings.CutPrefix(p, "github.com/u-root/u-root/cmds/core/"); ok {
			got = append(got, c)
		}
	}
	want := append([]string(nil), Commands...)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("boot/tools.go imports\n  %v\nCommands are\n  %v", got, want)
	}
}
