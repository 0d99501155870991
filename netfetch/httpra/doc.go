// Package httpra reads a large file on an HTTP(S) server as an
// [io.ReaderAt], the way thaw reads a bundle from `thaw serve` or any
// server that honours Range requests, and uploads files and log lines to
// such a server.
//
// [Open] learns the file's size and validator (ETag, else Last-Modified)
// with a HEAD, or a GET of bytes=0-0 when HEAD is refused.
// [ReaderAt.ReadAt] then fetches Range: bytes=off-end windows and checks
// that every answer is the same file: a strong ETag goes out in If-Match
// and If-Range (with no ETag, Last-Modified goes in If-Unmodified-Since
// and If-Range), and the ETag, Last-Modified and total size of each answer
// are compared with what Open saw, so a file replaced on the server while
// it is being read ends in a [ChangedError] instead of a mix of two files.
// ReadAt has no context of its own: the one given to Open bounds it.
//
// Reading continues across failures: a connection cut in the middle of a
// body, a stalled body (no byte for [Options.Timeout]), a reset or a 5xx
// answer is retried from the first byte not yet received, with exponential
// backoff. Retries count failures in a row; any progress resets the count.
// A server that ignores Range and answers 200 with the whole file is read
// by skipping to the offset, up to [Options.SkipLimit]; beyond that the read
// fails with [ErrNoRange].
//
// Sequential reads stream: a ReadAt that starts where an earlier one ended
// continues that answer's body, and each new window of a sequential run is
// twice the last, up to 64 MiB, so the socket buffer serves as read-ahead.
// At most four answers are held open between calls; memory stays at a few
// small buffers whatever the file size. ReadAt may be called from several
// goroutines at once.
//
// Failures are typed so that callers can branch with errors.Is and
// errors.As and print them as they are: [ErrDNS], [ErrRefused] and [ErrTLS]
// ([*NetError]), [ErrNotFound] and [ErrUnauthorized] ([*StatusError]),
// [ErrChanged] ([*ChangedError]) and [ErrNoRange].
//
// [Put] streams an upload (chunked when the length is not known, with
// Expect: 100-continue so that a refused token costs no body) and [PostLog]
// sends one agent log record. Both and every read carry
// Authorization: Bearer [Options.Token] when it is set.
package httpra
