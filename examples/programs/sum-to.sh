#!/bin/sh
# The program of examples/program.ts: dispyts ships it to each node and runs it once per job
# with the job's arguments. It sums the integers 1..$1, prints the sum and the node's name,
# sleeps $2 seconds, and exits with the sum modulo 7: a program's result is its exit code.
n=$1
s=0
i=1
while [ "$i" -le "$n" ]; do
  s=$((s + i))
  i=$((i + 1))
done
echo "sum 1..$n = $s on $(uname -n)"
echo "computed in $(pwd)" >&2
sleep "${2:-0}"
exit $((s % 7))
