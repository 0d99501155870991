#!/usr/bin/env bash
# Bundle throughput and memory on a >= 2 GiB synthetic memory+disk capture,
# against the kernel's LZO image of the same memory (the baseline, same run).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./scripts/bench/bundlebench -memory "${MEMORY_MB:-1024}" -disk "${DISK_MB:-1024}" "$@"
