#!/bin/bash
# Runs each fuzz target given as PACKAGE:TARGET for DURATION, new inputs
# minimized for at most 50 runs so that the time goes to fuzzing.
#
#   [FUZZJOBS=N] scripts/fuzz.sh DURATION PACKAGE:TARGET…
#
# FUZZJOBS targets run at a time (default 1), each with an equal share of
# the CPUs as fuzzing workers; a target's output is printed when it ends.
#
# Go's fuzzing engine can end a short run with "context deadline exceeded"
# when -fuzztime runs out while it still minimizes an input; that is not a
# failing input (none is written), so such a target is run once more. A
# failing input fails at once.
set -u
dur=$1
shift
jobs=${FUZZJOBS:-1}
workers=$(( $(nproc) / jobs ))
[ "$workers" -ge 1 ] || workers=1

one() {
	local pkg=${1%%:*} target=${1#*:} out rc try
	for try in 1 2; do
		out=$(go test -run='^$' -fuzz="^$target\$" -fuzztime="$dur" -fuzzminimizetime=50x -parallel="$workers" "$pkg" 2>&1)
		rc=$?
		if [ $rc -eq 0 ]; then
			printf 'fuzz %s in %s for %s\n%s\n' "$target" "$pkg" "$dur" "$(tail -4 <<<"$out")"
			return 0
		fi
		if [ $try -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input' <<<"$out"; then
			echo "fuzz $target: the engine ran out of time while minimizing (no failing input): once more"
			continue
		fi
		printf 'fuzz %s in %s for %s: FAILED\n%s\n' "$target" "$pkg" "$dur" "$(tail -40 <<<"$out")"
		return 1
	done
}

status=0
running=0
for f in "$@"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || status=1
		running=$((running - 1))
	fi
	one "$f" &
	running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
	wait -n || status=1
	running=$((running - 1))
done
exit $status
