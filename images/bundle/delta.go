package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Page deltas. Two captures of one server a minute apart share most of
// their memory pages, but not at the same places: a page freed or taken
// shifts every later one, and the pages that changed are scattered over
// the whole image, so that almost no chunk comes out equal. A chunk in a
// store may therefore be stored as a page delta: for each of its pages,
// either the page itself (a literal) or where an equal page already is in
// the store (a base chunk and a page of it). The base chunks are named in
// the signed index (Chunk.Base) and checked by their hash like any chunk.
//
// The pages of a base chunk are its payload's pages: the plaintext of a
// plain chunk, the literal pages of a delta. A delta never points into
// another delta's references, so a reader fetches a base chunk and copies
// from it, without a chain to follow.
//
// The payload of a delta chunk (compressed and sealed like any chunk):
//
//	"THAWPGD1"                  magic
//	u32 pages, u32 bases        little-endian
//	bases × 32 bytes            the SHA-256 of each base chunk's stored bytes, as in the index
//	pages × u32 op              base<<24 | page, or OpLiteral, or OpZero
//	literals × 4096 bytes       one per OpLiteral op, in order
const (
	deltaMagic = "THAWPGD1"
	// OpLiteral takes the next literal page of the delta.
	OpLiteral = 0xFFFFFFFF
	// OpZero is a page of zeros.
	OpZero = 0xFFFFFFFE
	// MaxBases is how many base chunks one delta may name.
	MaxBases = 16
	// deltaMinPages is the fewest pages a delta must find elsewhere to be
	// worth a base fetch at restore.
	deltaMinPages = 4
	pageSize      = 4096
	// baseShare: a base must give a delta at least 1/baseShare of its
	// pages.
	baseShare = 64
)

// Ref names a base chunk of a delta: a chunk in the store, by the SHA-256
// of its stored bytes, their number, and the length of its payload (the
// plaintext, or for a delta its encoding). Delta says which.
type Ref struct {
	SHA256 string `json:"sha256"`
	Stored int64  `json:"stored"`
	Len    int64  `json:"len"`
	Delta  bool   `json:"delta,omitempty"`
}

// delta is a parsed delta payload.
type delta struct {
	ops      []uint32
	bases    [][32]byte
	literals []byte
}

// parseDelta checks a delta payload that must make want bytes of pages
// and names nbase bases.
func parseDelta(b []byte, want int64, nbase int) (*delta, error) {
	if len(b) < 16 || string(b[:8]) != deltaMagic {
		return nil, errors.New("page delta: no THAWPGD1 magic at byte 0")
	}
	le := binary.LittleEndian
	pages, bases := int64(le.Uint32(b[8:])), int(le.Uint32(b[12:]))
	if pages*pageSize != want {
		return nil, fmt.Errorf("page delta: %d pages at byte 8, the index says %d bytes", pages, want)
	}
	if bases != nbase || bases > MaxBases {
		return nil, fmt.Errorf("page delta: %d bases at byte 12, the index names %d (at most %d)", bases, nbase, MaxBases)
	}
	at := int64(16)
	if int64(len(b)) < at+int64(bases)*32+pages*4 {
		return nil, fmt.Errorf("page delta: %d bytes, too short for %d bases and %d ops", len(b), bases, pages)
	}
	d := &delta{ops: make([]uint32, pages), bases: make([][32]byte, bases)}
	for i := range d.bases {
		copy(d.bases[i][:], b[at:])
		at += 32
	}
	lits := int64(0)
	for i := range d.ops {
		op := le.Uint32(b[at:])
		switch {
		case op == OpLiteral:
			lits++
		case op == OpZero:
		case int(op>>24) >= bases:
			return nil, fmt.Errorf("page delta: op %d at byte %d names base %d of %d", i, at, op>>24, bases)
		}
		d.ops[i] = op
		at += 4
	}
	if int64(len(b))-at != lits*pageSize {
		return nil, fmt.Errorf("page delta: %d bytes of literals at byte %d, the ops take %d pages", int64(len(b))-at, at, lits)
	}
	d.literals = b[at:]
	return d, nil
}

// payloadPage returns page j of a base chunk's payload.
func payloadPage(payload []byte, isDelta bool, j uint32) ([]byte, bool) {
	at := int64(j) * pageSize
	if isDelta {
		if len(payload) < 16 {
			return nil, false
		}
		le := binary.LittleEndian
		pages, bases := int64(le.Uint32(payload[8:])), int64(le.Uint32(payload[12:]))
		at += 16 + bases*32 + pages*4
	}
	if at < 0 || at+pageSize > int64(len(payload)) {
		return nil, false
	}
	return payload[at : at+pageSize], true
}

// Pages maps the pages of chunks in a store to where they are: what a
// Writer (StoreOptions.Pages) makes page deltas against. Pages are known
// by the SHA-256 of their bytes (the first 16 bytes of it); the map holds
// no page.
type Pages struct {
	seal [32]byte // sealOf the key the chunks were read with
	refs []Ref
	m    map[[16]byte]pageAt
	// makeDelta's buffers, reused: a capture makes its deltas with the
	// garbage collector off.
	found []pageAt
	uses  map[int32]int
	out   []byte
	lits  []byte
}

type pageAt struct {
	ref  int32
	page uint32
}

// NewPages returns an empty map.
func NewPages() *Pages { return &Pages{m: map[[16]byte]pageAt{}} }

// Len is how many distinct pages the map knows.
func (p *Pages) Len() int { return len(p.m) }

func pageKey(b []byte) [16]byte {
	s := sha256.Sum256(b)
	return [16]byte(s[:16])
}

// addPages records the whole pages of b as pages 0, 1, … of base ref.
func (p *Pages) addPages(b []byte, ref int32) {
	for j := 0; (j+1)*pageSize <= len(b); j++ {
		p.put(b[j*pageSize:(j+1)*pageSize], ref, uint32(j))
	}
}

func (p *Pages) put(page []byte, ref int32, j uint32) {
	if IsZero(page) {
		return
	}
	k := pageKey(page)
	if _, ok := p.m[k]; !ok {
		p.m[k] = pageAt{ref, j}
	}
}

// IndexPages adds to p the pages of every non-zero chunk of stream s,
// fetching each chunk from the store (the Reader must be unlocked, or the
// bundle plain). Only bundles in a store can be bases; a bundle sealed
// with a per-bundle data key (SchemeAge) cannot.
func (br *Reader) IndexPages(ctx context.Context, p *Pages, s *Stream) error {
	if !br.InStore() || (br.Index.Encryption != nil && br.siv == nil) {
		return errors.New("bundle: only a bundle in a chunk store, plain or sealed with its chunk key, can be the base of page deltas")
	}
	if p.Len() > 0 && p.seal != sealOf(br.siv) {
		return errors.New("bundle: pages of bundles sealed with two chunk keys cannot be mixed")
	}
	p.seal = sealOf(br.siv)
	seen := map[string]bool{}
	for i, c := range s.Chunks {
		if c.Zero || seen[c.SHA256] {
			continue
		}
		seen[c.SHA256] = true
		stored := make([]byte, c.Stored)
		if err := br.readStored(ctx, s, i, stored); err != nil {
			return err
		}
		payload, err := br.payload(s, i, stored)
		if err != nil {
			return err
		}
		if len(c.Base) > 0 {
			d, err := br.parseDelta(s, i, payload)
			if err != nil {
				return err
			}
			// The delta's literals are its own pages; its other pages are
			// already where its ops say, in its bases.
			p.addPages(d.literals, int32(len(p.refs)))
			p.refs = append(p.refs, Ref{SHA256: c.SHA256, Stored: c.Stored, Len: int64(len(payload)), Delta: true})
			n := len(p.refs)
			p.refs = append(p.refs, c.Base...)
			// Map the pages the delta copies, by their place in its bases,
			// from the pages the delta makes.
			out, err := br.apply(ctx, s, i, d, nil)
			if err != nil {
				return err
			}
			for j, op := range d.ops {
				if op != OpLiteral && op != OpZero {
					p.put(out[j*pageSize:(j+1)*pageSize], int32(n+int(op>>24)), op&0xFFFFFF)
				}
			}
			continue
		}
		p.addPages(payload, int32(len(p.refs)))
		p.refs = append(p.refs, Ref{SHA256: c.SHA256, Stored: c.Stored, Len: int64(len(payload))})
	}
	return nil
}

// sealOf names a chunk key without giving it away (zero: plaintext).
func sealOf(k *siv) [32]byte {
	if k == nil {
		return [32]byte{}
	}
	return sha256.Sum256(append([]byte("thaw pages "), k.mac...))
}

// UnlockChunkKey opens a bundle sealed with a chunk key (SchemeStore) with
// that key itself, as a capture that holds it does to read its previous
// capture. A wrong key shows at the first chunk read.
func (br *Reader) UnlockChunkKey(key []byte) error {
	e := br.Index.Encryption
	if e == nil || br.siv != nil {
		return nil
	}
	if e.Scheme != SchemeStore {
		return fmt.Errorf("bundle: sealed with %s, not with a chunk key", e.Scheme)
	}
	var err error
	br.siv, err = newSIV(key)
	return err
}

// makeDelta encodes the pages of b that p knows as references, if enough
// do, and says how many pages it did not store; it returns nil when b is
// better stored whole.
func (p *Pages) makeDelta(b []byte) ([]byte, []Ref, int) {
	if len(b)%pageSize != 0 || len(b) < deltaMinPages*pageSize {
		return nil, nil, 0
	}
	n := len(b) / pageSize
	if cap(p.found) < n {
		p.found = make([]pageAt, n)
	}
	found := p.found[:n]
	if p.uses == nil {
		p.uses = map[int32]int{}
	}
	uses := p.uses
	clear(uses)
	hits := 0
	for j := range n {
		page := b[j*pageSize : (j+1)*pageSize]
		found[j] = pageAt{ref: -1}
		if IsZero(page) {
			found[j].ref = -2
			continue
		}
		if at, ok := p.m[pageKey(page)]; ok {
			found[j] = at
			uses[at.ref]++
			hits++
		}
	}
	if hits < deltaMinPages {
		return nil, nil, 0
	}
	// The bases that give most pages, at most MaxBases.
	order := make([]int32, 0, len(uses))
	for r := range uses {
		order = append(order, r)
	}
	sort.Slice(order, func(i, k int) bool {
		if uses[order[i]] != uses[order[k]] {
			return uses[order[i]] > uses[order[k]]
		}
		return order[i] < order[k]
	})
	if len(order) > MaxBases {
		order = order[:MaxBases]
	}
	// A base costs a reader its whole stored size (once, while it stays
	// in the reader's cache): one that gives this chunk few of its pages
	// is not worth it, and those pages are stored here.
	slot := map[int32]uint32{}
	var refs []Ref
	hits = 0
	for _, r := range order {
		if uses[r] < max(deltaMinPages, int(p.refs[r].Len/pageSize/baseShare)) {
			continue
		}
		slot[r] = uint32(len(refs))
		refs = append(refs, p.refs[r])
		hits += uses[r]
	}
	if hits < deltaMinPages {
		return nil, nil, 0
	}
	le := binary.LittleEndian
	out := append(p.out[:0], make([]byte, 16)...)
	copy(out, deltaMagic)
	le.PutUint32(out[8:], uint32(n))
	le.PutUint32(out[12:], uint32(len(refs)))
	for _, r := range refs {
		s, _ := hex.DecodeString(r.SHA256)
		out = append(out, s...)
	}
	lits := p.lits[:0]
	for j, at := range found {
		op := uint32(OpLiteral)
		if at.ref == -2 {
			op = OpZero
		} else if s, ok := slot[at.ref]; ok && at.ref >= 0 {
			op = s<<24 | at.page
		} else {
			lits = append(lits, b[j*pageSize:(j+1)*pageSize]...)
		}
		out = le.AppendUint32(out, op)
	}
	out = append(out, lits...)
	p.out, p.lits = out, lits
	return out, refs, n - len(lits)/pageSize
}

// baseCache keeps the payloads of the base chunks read last: the deltas of
// one stream draw on a few neighbouring bases each. Each base is read
// once while it stays; the workers of a Fetch that need one that is
// being read wait for it, the others go on.
type baseCache struct {
	mu    sync.Mutex
	m     map[string]*baseEntry
	order []string
}

type baseEntry struct {
	done    chan struct{}
	payload []byte
	err     error
}

const baseCacheSize = 32

// basePayload reads, checks and decodes base chunk r (through the cache).
func (br *Reader) basePayload(ctx context.Context, r Ref) ([]byte, error) {
	bc := &br.bases
	bc.mu.Lock()
	e, ok := bc.m[r.SHA256]
	if !ok {
		if bc.m == nil {
			bc.m = map[string]*baseEntry{}
		}
		if len(bc.order) >= baseCacheSize {
			delete(bc.m, bc.order[0])
			bc.order = bc.order[1:]
		}
		e = &baseEntry{done: make(chan struct{})}
		bc.m[r.SHA256] = e
		bc.order = append(bc.order, r.SHA256)
	}
	bc.mu.Unlock()
	if ok {
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return e.payload, e.err
	}
	e.payload, e.err = br.readBase(ctx, r)
	close(e.done)
	if e.err != nil {
		bc.mu.Lock()
		if bc.m[r.SHA256] == e {
			delete(bc.m, r.SHA256) // read again next time
		}
		bc.mu.Unlock()
	}
	return e.payload, e.err
}

func (br *Reader) readBase(ctx context.Context, r Ref) ([]byte, error) {
	if br.src == nil {
		return nil, errors.New("the bundle's chunks are in a chunk store, and no store was given")
	}
	stored := make([]byte, r.Stored)
	if err := br.src.ReadChunk(ctx, r.SHA256, stored); err != nil {
		return nil, fmt.Errorf("base chunk %s: %w", ChunkPath(r.SHA256), err)
	}
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != r.SHA256 {
		return nil, fmt.Errorf("base chunk %s: %w", ChunkPath(r.SHA256), ErrDamaged)
	}
	if br.siv != nil {
		plain, err := br.siv.open(stored[sivNonce:sivNonce], stored)
		if err != nil {
			return nil, fmt.Errorf("base chunk %s: decryption: %w", ChunkPath(r.SHA256), err)
		}
		stored = plain
	}
	out, err := br.dec.DecodeAll(stored, nil)
	if err != nil {
		return nil, fmt.Errorf("base chunk %s: zstd: %w", ChunkPath(r.SHA256), err)
	}
	if int64(len(out)) != r.Len {
		return nil, fmt.Errorf("base chunk %s: %d bytes after decompression, the index says %d", ChunkPath(r.SHA256), len(out), r.Len)
	}
	return out, nil
}

// applyDelta makes the pages of delta chunk i of s from its payload and
// its bases, into dst (reused when big enough).
func (br *Reader) applyDelta(ctx context.Context, s *Stream, i int, payload, dst []byte) ([]byte, error) {
	d, err := br.parseDelta(s, i, payload)
	if err != nil {
		return nil, err
	}
	return br.apply(ctx, s, i, d, dst)
}

// parseDelta parses the payload of delta chunk i of s and checks it
// against the index.
func (br *Reader) parseDelta(s *Stream, i int, payload []byte) (*delta, error) {
	c := s.Chunks[i]
	d, err := parseDelta(payload, c.Len, len(c.Base))
	if err != nil {
		return nil, fmt.Errorf("bundle: stream %q chunk %d %s: %w", s.Name, i, br.place(c), err)
	}
	for k, b := range d.bases {
		if hex.EncodeToString(b[:]) != c.Base[k].SHA256 {
			return nil, fmt.Errorf("bundle: stream %q chunk %d %s: page delta: base %d is %x, the index says %s", s.Name, i, br.place(c), k, b, c.Base[k].SHA256)
		}
	}
	return d, nil
}

// apply makes the pages of delta chunk i of s from d and its bases.
func (br *Reader) apply(ctx context.Context, s *Stream, i int, d *delta, dst []byte) ([]byte, error) {
	c := s.Chunks[i]
	where := fmt.Sprintf("bundle: stream %q chunk %d %s", s.Name, i, br.place(c))
	if int64(cap(dst)) < c.Len {
		dst = make([]byte, c.Len)
	}
	dst = dst[:c.Len]
	lit := d.literals
	for j, op := range d.ops {
		page := dst[j*pageSize : (j+1)*pageSize]
		switch op {
		case OpLiteral:
			copy(page, lit[:pageSize])
			lit = lit[pageSize:]
		case OpZero:
			clear(page)
		default:
			r := c.Base[op>>24]
			base, err := br.basePayload(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			src, ok := payloadPage(base, r.Delta, op&0xFFFFFF)
			if !ok {
				return nil, fmt.Errorf("%s: page delta: page %d of base %s is past its end", where, op&0xFFFFFF, ChunkPath(r.SHA256))
			}
			copy(page, src)
		}
	}
	return dst, nil
}
