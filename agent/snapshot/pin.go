package snapshot

import _ "unsafe" // for go:linkname

// procPin and procUnpin are the runtime's own (sync and sync/atomic use
// them): while pinned, the calling goroutine cannot be preempted, neither
// by sysmon's signal nor by the flag it checks at the next function call.
//
// Once SNAPSHOT_FREEZE has returned, every other thread of this process
// is frozen. A preemption then puts this goroutine on the run queue and
// hands the only P to another thread to run it, a thread the freezer
// holds: the restore would wait forever before the kernel ever reached
// the image (seen as about one direct restore in four under QEMU TCG,
// where sysmon's 10 ms budget passes during the freeze's sync).
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
