#!/bin/bash
# The interleaved 100,000-node runs of this folder: three checkouts, twice each, in turn.
#   bash run-100k.sh OUT LAST_ROUND_TREE BEFORE_TREE AFTER_TREE
# (trees at 957e121, f085c04 and d09b936; PYTHON defaults to python3 and must have hierclust's
# dependencies). Writes OUT/{last-round,before,after}-{1,2}.json and OUT/*.time (/usr/bin/time -v,
# then the load average when the run ended).
set -eu
out=$1
trees=("last-round:$2" "before:$3" "after:$4")
for i in 1 2; do
  for t in "${trees[@]}"; do
    name=${t%%:*}
    tree=${t#*:}
    (cd /tmp && PYTHONPATH=$tree /usr/bin/time -v "${PYTHON:-python3}" -m hierclust sim \
      --nodes 100000 --fanout 16 --kill leaf --seed 3 --json) > "$out/$name-$i.json" 2> "$out/$name-$i.time"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/$name-$i.time"
  done
done
