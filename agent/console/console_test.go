package console

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
)

func TestStages(t *testing.T) {
	var out bytes.Buffer
	var sunk []string
	u := New(func(s string) { sunk = append(sunk, s) }, &out)
	clock := time.Unix(0, 0)
	u.now = func() time.Time { return clock }
	u.Begin("dhcp", "eth0")
	clock = clock.Add(1500 * time.Millisecond)
	u.Begin("image", "http://x/b")
	clock = clock.Add(time.Second)
	u.Fail("404")
	got := out.String()
	for _, want := range []string{"[....] dhcp      eth0", "[ ok ] dhcp      eth0 (1.5s)", "[FAIL] image     404 (1.0s)"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if len(sunk) != 4 {
		t.Errorf("sink got %d lines, want 4", len(sunk))
	}
	if s := u.Summary(); !strings.Contains(s, "total        2.5s") {
		t.Errorf("summary:\n%s", s)
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		want        string
	}{
		{0, 100 << 20, "w [..............................]   0% 0/100 MiB"},
		{50 << 20, 100 << 20, "w [###############...............]  50% 50/100 MiB"},
		{100 << 20, 100 << 20, "w [##############################] 100% 100/100 MiB"},
		{0, 0, "w [##############################] 100% 0/0 MiB"},
	} {
		if got := Bar("w", c.done, c.total, time.Second); !strings.HasPrefix(got, c.want) {
			t.Errorf("Bar(%d,%d) = %q, want prefix %q", c.done, c.total, got, c.want)
		}
	}
}

func TestBox(t *testing.T) {
	b := Box("REFUSED", []plan.Refusal{{Check: plan.CheckCPU, Reason: "the target CPU lacks " + strings.Repeat("avx512f ", 12), Hint: "boot a CPU with these flags"}}, NothingWritten)
	lines := strings.Split(b, "\n")
	for _, l := range lines {
		if len(l) != 74 {
			t.Errorf("box line %q is %d wide, want 74", l, len(l))
		}
	}
	if !strings.Contains(b, "CPU: the target CPU lacks") || !strings.Contains(b, "fix: boot a CPU") || !strings.Contains(b, "Nothing was written") {
		t.Errorf("box:\n%s", b)
	}
}

func TestCodeAndWhere(t *testing.T) {
	for _, tc := range []struct {
		rs      []plan.Refusal
		refused bool
		want    string
	}{
		{[]plan.Refusal{{Check: plan.CheckCPU}}, true, "R-CPU"},
		{[]plan.Refusal{{Check: plan.CheckCPU}, {Check: plan.CheckMemory}}, true, "R-CPU+1"},
		{[]plan.Refusal{{Check: plan.CheckError}}, false, "F-ERROR"},
		{nil, false, "F-ERROR"},
	} {
		if got := Code(tc.rs, tc.refused); got != tc.want {
			t.Errorf("Code(%v, %v) = %q, want %q", tc.rs, tc.refused, got, tc.want)
		}
	}
	box := Box("REFUSED: "+strings.Repeat("a long title ", 8), []plan.Refusal{{Check: plan.CheckCPU, Reason: "r"}}, NothingWritten+"\n"+Where("R-CPU", "http://10.0.0.5:8080/log/web1"))
	for _, l := range strings.Split(box, "\n") {
		if len(l) != 74 {
			t.Errorf("box line of %d columns (want 74, inside 80×25): %q", len(l), l)
		}
	}
	if !strings.Contains(box, "| code R-CPU   log: http://10.0.0.5:8080/log/web1") {
		t.Errorf("box lacks the code and log line:\n%s", box)
	}
	if Where("F-ERROR", "") != "code F-ERROR   log: this console only (no thaw.log=)" {
		t.Error(Where("F-ERROR", ""))
	}
}

// A word longer than a line (a chunk's name) is cut, not looped on.
func TestWrapLongWord(t *testing.T) {
	long := "chunks/f8/" + strings.Repeat("f85079c55e", 7)
	for _, s := range []string{
		"VERIFY: bundle: stream \"disk0\" chunk 7 " + long + ": sha256 mismatch",
		long + long,
		"x " + long,
	} {
		lines := wrap(s, 68)
		joined := ""
		for i, l := range lines {
			if len(l) > 68 {
				t.Errorf("line %d of %q: %d bytes", i, s, len(l))
			}
			joined += strings.TrimLeft(l, " ")
		}
		if strings.ReplaceAll(joined, " ", "") != strings.ReplaceAll(s, " ", "") {
			t.Errorf("wrap lost text: %q → %q", s, lines)
		}
	}
}
