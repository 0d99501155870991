package capture

import (
	"sort"
	"time"

	"github.com/thawlinux/thaw/images/manifest"
	"github.com/thawlinux/thaw/images/swsusp"
)

// Free swap slots go into the bundle as zeros. What a free slot of the
// server's own swap holds means nothing to the resumed kernel, but it
// differs from one capture to the next (pages swapped in since, the
// previous restore's resume image), so that every swap chunk would cross
// the network again. Once the image exists, the capture takes every slot
// that is free in the image's view (SNAPSHOT_ALLOC_SWAP_PAGE, after the
// slots reserved for the image) and the disk stream reads them as zeros.

// freeSlotsBudget bounds the time the frozen capture spends asking for
// free slots: the slots found until then are zeroed, the others sent as
// they are.
const freeSlotsBudget = 5 * time.Second

// findFreeSlots takes the remaining free pages of the own swap and makes
// the disk spans the stream zeroes: those and the reserved slots.
func (c *capture) findFreeSlots() {
	if c.own == nil || c.m.Resume != c.own {
		return
	}
	start := time.Now()
	var ext extents
	var n int64
	for {
		off, err := c.dev.AllocSwapPage()
		if err != nil {
			break // ENOSPC: none left
		}
		ext.add(uint64(off / swsusp.PageSize))
		if n++; n%4096 == 0 && time.Since(start) > freeSlotsBudget {
			c.logf("free swap slots: stopped after %.1fs, the others are sent as they are", time.Since(start).Seconds())
			break
		}
	}
	all := append(append([]manifest.Extent(nil), c.own.Slots...), ext...)
	c.holes = slotSpans(c.own, all)
	var bytes int64
	for _, h := range c.holes {
		bytes += h.end - h.off
	}
	c.logf("free swap slots: %d free pages and the %d reserved go as zeros: %d MiB in %d runs (found in %.2fs)", n, countPages(c.own.Slots), bytes>>20, len(c.holes), time.Since(start).Seconds())
}

func countPages(e []manifest.Extent) (n uint64) {
	for _, x := range e {
		n += x.Count
	}
	return n
}

// span is a run of disk bytes [off, end).
type span struct{ off, end int64 }

// slotSpans places swap pages on the disk through the swap's segments,
// sorted and merged. Pages outside every segment are left out.
func slotSpans(r *manifest.Resume, ext []manifest.Extent) []span {
	var out []span
	for _, e := range ext {
		lo, hi := int64(e.Start)*swsusp.PageSize, int64(e.Start+e.Count)*swsusp.PageSize
		for _, g := range r.Segments {
			a, b := max(lo, g.Start), min(hi, g.Start+g.Length)
			if a < b {
				out = append(out, span{g.DiskOffset + a - g.Start, g.DiskOffset + b - g.Start})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].off < out[j].off })
	merged := out[:0]
	for _, s := range out {
		if k := len(merged); k > 0 && s.off <= merged[k-1].end {
			merged[k-1].end = max(merged[k-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// zeroHoles clears the bytes of buf (which holds the disk's bytes from
// at on) that fall in holes (sorted).
func zeroHoles(buf []byte, at int64, holes []span) {
	end := at + int64(len(buf))
	i := sort.Search(len(holes), func(i int) bool { return holes[i].end > at })
	for ; i < len(holes) && holes[i].off < end; i++ {
		a, b := max(holes[i].off, at), min(holes[i].end, end)
		clear(buf[a-at : b-at])
	}
}
