package restore

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Reporter is told what the pipeline does: the console UI
// (agent/console), a JSON writer, or a test's recorder.
type Reporter interface {
	// Begin starts a stage.
	Begin(stage, detail string)
	// Done ends the current stage.
	Done(detail string)
	// Fail ends the current stage as failed.
	Fail(detail string)
	// Skip ends the current stage as skipped, saying why.
	Skip(why string)
	// Logf adds a line under the current stage.
	Logf(format string, a ...any)
	// Progress reports done of total bytes of the current stage's work.
	Progress(what string, done, total int64)
}

// Event is one line of a JSONReporter.
type Event struct {
	Time   string `json:"time"`
	Event  string `json:"event"` // begin, done, fail, skip, log, progress
	Stage  string `json:"stage,omitempty"`
	Detail string `json:"detail,omitempty"`
	What   string `json:"what,omitempty"`
	Done   int64  `json:"done,omitempty"`
	Total  int64  `json:"total,omitempty"`
}

// JSONReporter writes each event as one JSON line. Progress is written at
// most once a second per stage, and at the end.
type JSONReporter struct {
	mu    sync.Mutex
	enc   *json.Encoder
	stage string
	last  time.Time
	now   func() time.Time
}

// NewJSONReporter returns a Reporter writing JSON lines to w.
func NewJSONReporter(w io.Writer) *JSONReporter {
	return &JSONReporter{enc: json.NewEncoder(w), now: time.Now}
}

func (j *JSONReporter) emit(e Event) {
	e.Time = j.now().UTC().Format(time.RFC3339Nano)
	if e.Stage == "" {
		e.Stage = j.stage
	}
	j.enc.Encode(e)
}

func (j *JSONReporter) Begin(stage, detail string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stage = stage
	j.emit(Event{Event: "begin", Detail: detail})
}

func (j *JSONReporter) Done(detail string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.emit(Event{Event: "done", Detail: detail})
}

func (j *JSONReporter) Fail(detail string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.emit(Event{Event: "fail", Detail: detail})
}

func (j *JSONReporter) Skip(why string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.emit(Event{Event: "skip", Detail: why})
}

func (j *JSONReporter) Logf(format string, a ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.emit(Event{Event: "log", Detail: fmt.Sprintf(format, a...)})
}

func (j *JSONReporter) Progress(what string, done, total int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if done != total && j.now().Sub(j.last) < time.Second {
		return
	}
	j.last = j.now()
	j.emit(Event{Event: "progress", What: what, Done: done, Total: total})
}

// Discard is a Reporter that says nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Begin(string, string)          {}
func (discard) Done(string)                   {}
func (discard) Fail(string)                   {}
func (discard) Skip(string)                   {}
func (discard) Logf(string, ...any)           {}
func (discard) Progress(string, int64, int64) {}
