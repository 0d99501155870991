// Package store is the image store behind `thaw serve`: an http.Handler
// that serves one directory tree of bundles over HTTP, takes uploads into
// it and collects the restore agents' logs.
//
// Requests:
//
//   - GET and HEAD /PATH read a file with http.ServeContent: Range (single
//     and multiple), If-Range, If-Match, If-None-Match and
//     If-(Un)Modified-Since. The ETag is strong and derived from the file's
//     inode, size and modification time in nanoseconds ("INODE-SIZE-MTIME"
//     in hex), not from its content; since uploads replace a file by
//     renaming a new one over it, a replaced file gets a new ETag.
//   - GET / or any directory lists it: a JSON object (path, entries with
//     name, size, mtime, dir, etag) when the request says
//     Accept: application/json or ?format=json, else a plain-text table
//     of name, size and mtime.
//   - PUT /PATH stores the body as PATH, creating the directories on the
//     way. It requires Authorization: Bearer TOKEN (compared in constant
//     time): 401 without it or with a wrong one, 403 when the store has no
//     token (read-only). The body, chunked or with a Content-Length, goes
//     to a temporary file beside the target, is synced, renamed over the
//     target and the directory synced: a reader sees the old file or the
//     whole new one, never a part, and an interrupted upload leaves no
//     target behind. The answer carries the body's SHA-256 in
//     X-Thaw-Sha256.
//   - A PUT whose body is a pack (images/bundle: a version 2 bundle, the
//     chunks the store lacks and the bundle object) is unpacked: each
//     chunk, checked against its hash, goes to chunks/ab/SUM in PATH's
//     directory (once: chunks are shared by every bundle there), and the
//     bundle object is stored as PATH only when every chunk it names is
//     present (409 if not). Chunks are never PUT one by one.
//   - GET /PATH?chunks, with the write token or PATH's one-use token,
//     lists the chunks beside PATH (32 bytes of sha256 each) and takes a
//     lease on them for the capture of PATH, kept in .thaw-leases/ until
//     PATH lands or for LeaseTTL: [GC] (thaw gc) removes nothing of that
//     directory meanwhile. [Have] is the client.
//   - POST /grant/PATH, with the write token, issues a one-use token that
//     may PUT PATH once before it expires (?ttl=, default a day, at most a
//     week): JSON {token, path, expires}. The store keeps the tokens'
//     SHA-256 in .thaw-grants.json (mode 0600) across restarts, and
//     revokes a token when a PUT with it is accepted; [RequestGrant] is
//     the client (thaw grant).
//   - POST /log/NAME appends the body's lines to DIR/logs/NAME.log, each
//     prefixed with the UTC time and the client's address. It requires
//     the token when the store has one. The logs are readable with
//     GET /logs/NAME.log; PUT cannot write under /logs/ nor /log/.
//
// Paths are confined to the directory with os.Root: ".." segments are
// refused (400), symbolic links that lead out of the tree are refused
// (403), and names starting with ".thaw-" (uploads in progress, the grants)
// are neither listed nor served. Every request is logged with its method,
// path, status, bytes in and out, and duration.
package store
