package dhcp

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	urand "github.com/u-root/uio/rand"
)

// nonBlocking is the random source nclient4 draws DHCP transaction ids
// from. A transaction id only tells this client's answers apart and is no
// secret. u-root's default source polls getrandom(GRND_NONBLOCK) until
// the kernel's pool is initialised; on a machine with no RDRAND and no
// hardware RNG nothing initialises it soon (only a blocking getrandom
// starts the kernel's jitter entropy), and every DHCP attempt failed with
// "could not get random number: context deadline exceeded". This source
// never waits: math/rand/v2's generator, seeded by the Go runtime from the
// kernel's AT_RANDOM bytes at exec.
type nonBlocking struct{}

func (nonBlocking) Read(b []byte) (int, error) { return fill(b), nil }

func (nonBlocking) ReadContext(_ context.Context, b []byte) (int, error) { return fill(b), nil }

func fill(b []byte) int {
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(w[:], rand.Uint64())
		copy(b[i:], w[:])
	}
	return len(b)
}

// The agent draws no secret from u-root's source: everything that needs
// one uses crypto/rand.
func init() { urand.Reader = nonBlocking{} }
