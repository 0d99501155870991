package restore

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/thawlinux/thaw/netfetch/httpra"
)

// RemoteLog sends the console's lines to thaw.log= (a thaw serve's
// /log). Lines printed before the network is up wait, at most 4096; the
// log never blocks the restore: a line that finds the queue full is
// dropped.
type RemoteLog struct {
	mu      sync.Mutex
	q       chan string
	buf     []string // lines before Start
	pending int      // lines queued and not yet sent
	ended   chan struct{}
	post    func(ctx context.Context, url string, line []byte, opt httpra.Options) error
}

// NewRemoteLog returns a log that keeps lines until Start.
func NewRemoteLog() *RemoteLog { return &RemoteLog{post: httpra.PostLog} }

// Line queues one console line (the console UI's sink).
func (l *RemoteLog) Line(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.q == nil {
		if len(l.buf) < 4096 {
			l.buf = append(l.buf, line)
		}
		return
	}
	select {
	case l.q <- line:
		l.pending++
	default:
	}
}

// Start sends the lines so far, and every later one, to url.
func (l *RemoteLog) Start(ctx context.Context, url, token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.q != nil || url == "" {
		return
	}
	q := make(chan string, 4096)
	l.pending += len(l.buf)
	for _, s := range l.buf {
		q <- s
	}
	l.buf = nil
	l.q, l.ended = q, make(chan struct{})
	go func() {
		defer close(l.ended)
		for line := range q {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			l.post(cctx, url, []byte(line), httpra.Options{Token: token, Retries: 1})
			cancel()
			l.mu.Lock()
			l.pending--
			l.mu.Unlock()
		}
	}()
}

// Record sends "thaw-KIND-json" and v as JSON to the log only: the probe
// record is a profile for "thaw plan --target", the plan record the plan
// as "thaw plan --json" prints it.
func (l *RemoteLog) Record(kind string, v any) {
	l.mu.Lock()
	started := l.q != nil
	l.mu.Unlock()
	if !started {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	l.Line("thaw-" + kind + "-json " + string(b))
}

// Flush waits (at most 5 s) until every queued line was sent. Lines
// may still be queued meanwhile (the fetch's workers log from their own
// goroutines).
func (l *RemoteLog) Flush() {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		n := l.pending
		l.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// Stop sends what is queued (at most 5 s) and stops the sender: no
// goroutine of the log runs after it. Later lines are kept, unsent.
func (l *RemoteLog) Stop() {
	l.mu.Lock()
	q, ended := l.q, l.ended
	l.mu.Unlock()
	if q == nil {
		return
	}
	l.Flush()
	l.mu.Lock()
	l.q = nil
	close(q)
	l.mu.Unlock()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
	}
}
