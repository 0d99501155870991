package console

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/thawlinux/thaw/agent/plan"
)

// State of a stage.
type State string

const (
	Running State = "...."
	OK      State = " ok "
	Failed  State = "FAIL"
	Skipped State = "skip"
)

// Stage is one step of the agent's work.
type Stage struct {
	Name   string        `json:"name"`
	State  State         `json:"state"`
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took_ns"`
	start  time.Time
}

// UI writes the stage list to its outputs.
type UI struct {
	mu      sync.Mutex
	outs    []io.Writer
	sink    func(line string)
	Stages  []*Stage
	cur     *Stage
	lastBar time.Time
	now     func() time.Time
}

// New returns a UI writing to outs; sink (may be nil) receives every line.
func New(sink func(string), outs ...io.Writer) *UI {
	return &UI{outs: outs, sink: sink, now: time.Now}
}

func (u *UI) line(s string) {
	for _, o := range u.outs {
		fmt.Fprintln(o, s)
	}
	if u.sink != nil {
		u.sink(s)
	}
}

// Banner prints a title line.
func (u *UI) Banner(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.line("==== " + s + " ====")
}

// Logf prints a detail line under the current stage.
func (u *UI) Logf(format string, a ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.line("       " + fmt.Sprintf(format, a...))
}

// Begin starts a stage, ending the one before it as OK if still running.
func (u *UI) Begin(name, detail string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil && u.cur.State == Running {
		u.endLocked(OK, u.cur.Detail)
	}
	s := &Stage{Name: name, State: Running, Detail: detail, start: u.now()}
	u.Stages = append(u.Stages, s)
	u.cur = s
	u.line(fmt.Sprintf("[....] %-9s %s", name, detail))
}

// Done ends the current stage with a detail.
func (u *UI) Done(detail string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endLocked(OK, detail)
}

// Fail ends the current stage as failed.
func (u *UI) Fail(detail string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endLocked(Failed, detail)
}

// Skip ends the current stage as skipped, saying why.
func (u *UI) Skip(why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endLocked(Skipped, why)
}

func (u *UI) endLocked(st State, detail string) {
	s := u.cur
	if s == nil {
		return
	}
	s.State, s.Detail, s.Took = st, detail, u.now().Sub(s.start)
	u.line(fmt.Sprintf("[%s] %-9s %s (%.1fs)", st, s.Name, detail, s.Took.Seconds()))
	u.cur = nil
}

// Progress draws a bar for the current stage, at most every 2 s and at
// the end: "[####......]  42% 1234/2900 MiB 85 MB/s".
func (u *UI) Progress(what string, done, total int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if done != total && u.now().Sub(u.lastBar) < 2*time.Second {
		return
	}
	u.lastBar = u.now()
	var el time.Duration
	if u.cur != nil {
		el = u.now().Sub(u.cur.start)
	}
	u.line("       " + Bar(what, done, total, el))
}

// Bar renders one progress line.
func Bar(what string, done, total int64, elapsed time.Duration) string {
	const width = 30
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	n := int(pct * width / 100)
	rate := float64(done) / max(elapsed.Seconds(), 0.001) / 1e6
	return fmt.Sprintf("%s [%s%s] %3d%% %d/%d MiB %.0f MB/s", what, strings.Repeat("#", n), strings.Repeat(".", width-n), pct, done>>20, total>>20, rate)
}

// Refused prints the box that remote hands read: why nothing was restored,
// what fixes it, and (footer) what state the disks are in.
func (u *UI) Refused(title string, rs []plan.Refusal, footer string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.line(Box(title, rs, footer))
}

// NothingWritten is the footer of a box shown before any disk was opened
// for writing.
const NothingWritten = "Nothing was written to any disk."

// Code is the short code of a refusal (R-CHECK) or failure (F-CHECK)
// that remote hands read out over the phone: the first check at fault.
func Code(rs []plan.Refusal, refused bool) string {
	c := "F-"
	if refused {
		c = "R-"
	}
	if len(rs) == 0 {
		return c + "ERROR"
	}
	c += strings.ToUpper(string(rs[0].Check))
	if len(rs) > 1 {
		c += fmt.Sprintf("+%d", len(rs)-1)
	}
	return c
}

// Where names the code and where the whole log is, for the box's last
// line.
func Where(code, logURL string) string {
	if logURL == "" {
		logURL = "this console only (no thaw.log=)"
	}
	return "code " + code + "   log: " + logURL
}

// Box renders the refusal box.
func Box(title string, rs []plan.Refusal, footer string) string {
	var body []string
	body = append(body, wrap(title, 68)...)
	body = append(body, "")
	for _, r := range rs {
		body = append(body, wrap(fmt.Sprintf("%s: %s", strings.ToUpper(string(r.Check)), r.Reason), 68)...)
		if r.Hint != "" {
			body = append(body, wrap("fix: "+r.Hint, 68)...)
		}
		body = append(body, "")
	}
	for _, f := range strings.Split(footer, "\n") {
		body = append(body, wrap(f, 68)...)
	}
	var b strings.Builder
	b.WriteString("+" + strings.Repeat("-", 72) + "+\n")
	for _, l := range body {
		fmt.Fprintf(&b, "| %-70s |\n", l)
	}
	b.WriteString("+" + strings.Repeat("-", 72) + "+")
	return b.String()
}

// wrap cuts s into lines of at most w bytes at spaces, the lines after the
// first indented by two; a word longer than a line (a hash, a URL) is cut
// where the line ends.
func wrap(s string, w int) []string {
	var out []string
	indent := 0
	for len(s) > w {
		i := strings.LastIndex(s[:w], " ")
		if i <= indent {
			i = w
		}
		out = append(out, s[:i])
		s, indent = "  "+strings.TrimLeft(s[i:], " "), 2
	}
	return append(out, s)
}

// Summary renders the timing table of the finished stages.
func (u *UI) Summary() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	var total time.Duration
	for _, s := range u.Stages {
		fmt.Fprintf(&b, "  %-9s %6.1fs  %s\n", s.Name, s.Took.Seconds(), s.State)
		total += s.Took
	}
	fmt.Fprintf(&b, "  %-9s %6.1fs", "total", total.Seconds())
	return b.String()
}
