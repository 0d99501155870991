package httpra

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// GetFull reads the whole object at rawURL into p, which must be exactly
// its size: one GET, retried as opt says (a stall, a cut, a 5xx), each
// answer checked for its length. It suits objects read whole, such as the
// chunks of a store, where Open's HEAD would double the round trips.
func GetFull(ctx context.Context, rawURL string, p []byte, opt Options) error {
	o := opt.norm()
	if o.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, time.Now().Add(o.Deadline), &DeadlineError{o.Deadline})
		defer cancel()
	}
	err := o.retry(ctx, "GET "+shown(rawURL), func() error {
		resp, err := o.get(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return o.statusError(http.MethodGet, rawURL, resp)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != int64(len(p)) {
			return &protocolError{rawURL, fmt.Sprintf("%d bytes, want %d", resp.ContentLength, len(p))}
		}
		if n, err := io.ReadFull(resp.Body, p); err != nil {
			return classify(fmt.Errorf("after %d of %d bytes: %w", n, len(p), err), rawURL)
		}
		var one [1]byte
		if n, _ := resp.Body.Read(one[:]); n > 0 {
			return &protocolError{rawURL, fmt.Sprintf("longer than %d bytes", len(p))}
		}
		return nil
	})
	if err != nil && context.Cause(ctx) != nil {
		if c := context.Cause(ctx); c != ctx.Err() {
			return fmt.Errorf("%s: %w", rawURL, c)
		}
	}
	return err
}
