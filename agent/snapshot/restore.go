package snapshot

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Restore hands a snapshot stream (swsusp_info page, metadata, data pages)
// to the running kernel through /dev/snapshot and asks it to jump into the
// image. The whole stream is written first, with ordinary Go code; only
// then is user space frozen (the kernel accepts the freeze after the
// pages), on one locked thread with the collector off. On success it does
// not return: the machine continues as the image. Any failure unfreezes.
// platform is the image header's SF_PLATFORM_MODE.
func Restore(stream io.Reader, platform bool, logf func(string, ...any)) (err error) {
	return RestoreWith(stream, platform, logf, nil)
}

// RestoreWith is Restore with beforeFreeze called after the last page and
// before the freeze. It must leave no goroutine that can become runnable
// (stop log senders, close network connections and their timers): the
// freeze stops every other thread of this process, and one frozen while
// it holds the only P (GOMAXPROCS 1) leaves this thread waiting for it
// forever when the freeze ioctl returns.
func RestoreWith(stream io.Reader, platform bool, logf func(string, ...any), beforeFreeze func()) (err error) {
	// The kernel allocates the image's pages and bitmaps atomically while
	// it takes them: give it the page cache (a restore has just written
	// disks through it) and this process's free heap first.
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		logf("drop caches: %v", err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	dev, err := Open(true)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
	}()
	if err := dev.PlatformSupport(platform); err != nil {
		return err
	}
	page := make([]byte, 4096)
	var pages int64
	for {
		_, rerr := io.ReadFull(stream, page)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("snapshot stream page %d: %w", pages, rerr)
		}
		n, werr := dev.Write(page)
		if werr != nil {
			return fmt.Errorf("page %d: %w", pages, werr)
		}
		if n != len(page) {
			return fmt.Errorf("page %d: the kernel took %d of 4096 bytes", pages, n)
		}
		pages++
	}
	if pages == 0 {
		return errors.New("empty snapshot stream")
	}
	logf("%d pages handed to the kernel; freezing and jumping into the image", pages)
	if beforeFreeze != nil {
		beforeFreeze()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// A memory limit (thaw restore and the agent set one) would start the
	// collector even with GOGC off: lift it too.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	dev.raw = true // one P, no collector: no other thread runs Go code now
	if err := frozenRestore(dev); err != nil {
		return fmt.Errorf("the kernel did not jump into the image: %w", err)
	}
	return errors.New("the kernel did not jump into the image")
}

// frozenRestore freezes the other processes and jumps into the image,
// with this goroutine pinned to its P from before the freeze until after
// the thaw (see procPin): nothing in between may block or be preempted.
// It returns only when the kernel did not jump.
func frozenRestore(dev *Device) (err error) {
	procPin()
	defer procUnpin()
	if err := dev.Freeze(); err != nil {
		return err
	}
	err = dev.AtomicRestore()
	if terr := dev.Thaw(); terr != nil {
		err = errors.Join(err, terr)
	}
	return err
}
