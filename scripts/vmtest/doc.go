// Package vmtest holds thaw's tests that boot real Debian kernels and guests
// under QEMU (build tag vm): `go test -tags vm ./scripts/vmtest/`. They need
// the kernels of `make kernels` and, for the server cases, the guest of
// `make server`; the Makefile's test target provides both.
package vmtest
