package restore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/thawlinux/thaw/netfetch/httpra"
)

// TestRemoteLog: lines before Start are sent first, lines from several
// goroutines while Flush waits are all sent, and Stop leaves no sender.
func TestRemoteLog(t *testing.T) {
	var mu sync.Mutex
	var got []string
	l := NewRemoteLog()
	l.post = func(_ context.Context, _ string, line []byte, _ httpra.Options) error {
		mu.Lock()
		got = append(got, string(line))
		mu.Unlock()
		return nil
	}
	l.Line("early")
	l.Record("probe", 1) // not started: records are for the log only, dropped
	l.Start(context.Background(), "http://store/log", "")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				l.Line(fmt.Sprintf("g%d %d", g, i))
			}
		}()
		l.Flush()
	}
	wg.Wait()
	l.Record("plan", map[string]bool{"ok": true})
	l.Stop()
	l.Line("after stop")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 202 || got[0] != "early" || got[len(got)-1] != `thaw-plan-json {"ok":true}` {
		t.Fatalf("%d lines sent, first %q last %q", len(got), got[0], got[len(got)-1])
	}
}
