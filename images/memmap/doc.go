// Package memmap reads firmware memory maps laid out as
// /sys/firmware/memmap ([Read]) and decides whether one map's RAM fits in
// another's ([CheckFits], [Covers]).
//
// The fit rule is the one every check of thaw applies, from thaw plan to the
// kexec loader: each RAM range of the source must lie in RAM of the target,
// where touching or overlapping RAM ranges of the target count as one
// ([RAM]). A firmware may split one stretch of RAM into several entries; the
// source's range is still RAM there.
package memmap
