#!/bin/bash
# Runs each fuzz target given as PACKAGE:TARGET for DURATION, new inputs
# minimized for at most 50 runs so that the time goes to fuzzing.
#
#   scripts/fuzz.sh DURATION PACKAGE:TARGET…
#
# Go's fuzzing engine can end a short run with "context deadline exceeded"
# when -fuzztime runs out while it still minimizes an input; that is not a
# failing input (none is written), so such a target is run once more. A
# failing input fails at once.
set -u
dur=$1
shift
status=0
for f in "$@"; do
	pkg=${f%%:*} target=${f#*:}
	for try in 1 2; do
		echo "fuzz $target in $pkg for $dur"
		out=$(go test -run='^$' -fuzz="^$target\$" -fuzztime="$dur" -fuzzminimizetime=50x "$pkg" 2>&1)
		rc=$?
		echo "$out" | tail -4
		if [ $rc -eq 0 ]; then
			break
		fi
		if [ $try -eq 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input' <<<"$out"; then
			echo "fuzz $target: the engine ran out of time while minimizing (no failing input): once more"
			continue
		fi
		echo "$out" | tail -40
		status=1
		break
	done
done
exit $status
