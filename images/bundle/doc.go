// Package bundle reads and writes thaw bundles: the portable, signed form of
// a captured server — its manifest, the memory snapshot stream, each disk as
// a block stream, the image kernel's files — cut into chunks that are each
// zstd-compressed and sha256-hashed, with an index that lets a reader verify
// and use any chunk on its own. The index (which names the manifest's
// digest) is signed with a minisign key. A version 2 bundle keeps its
// chunks in a chunk store, named by hash and shared by every bundle there;
// a pack carries it to the store in one upload. FORMAT.md documents both.
//
// A Writer needs only an io.Writer (a pipe, an HTTP upload); a Reader needs
// an io.ReaderAt (a file, HTTP range requests) and holds one chunk at a time.
package bundle
