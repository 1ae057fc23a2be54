#!/usr/bin/env bash
# private_floor.sh -- private messages on one node: ours, the bare baseline,
# the floor (the baseline that also answers and keeps each message in SQLite:
# benchmarks/baseline.py --floor) and ngIRCd, interleaved round by round
# through the same chatload load, then a table of medians.  It says how far
# ours is from the least a Python server doing the same work costs, and
# where that least stands against a C daemon.
#
#   cp -r ../shared/bench /tmp/bench && make -C /tmp/bench     # chatload
#   bash benchmarks/private_floor.sh                           # ~5 minutes
#
# Environment: LG=/tmp/bench/chatload  NGIRCD_CONF=../shared/bench/servers/ngircd.conf
#   REPS=3 DUR=6 WARM=2 N=1000 WINDOW=4  SERVERS="ours bare floor ngircd"  OUT=<dir>
# Run it from the repository root, in a venv where chat is installed
# (twistd chat), ngircd on the PATH for that column.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG=${LG:-/tmp/bench/chatload}
NGIRCD_CONF=${NGIRCD_CONF:-$ROOT/../shared/bench/servers/ngircd.conf}
REPS=${REPS:-3}
DUR=${DUR:-6}
WARM=${WARM:-2}
N=${N:-1000}
WINDOW=${WINDOW:-4}
SERVERS=${SERVERS:-"ours bare floor ngircd"}
OUT=${OUT:-$(mktemp -d /tmp/private-floor-XXXXXX)}
mkdir -p "$OUT"
USERS=$OUT/users.txt
RES=$OUT/results.jsonl
[ -x "$LG" ] || { echo "no chatload at $LG (see the top of this file)" >&2; exit 1; }
"$LG" --gen-users $((N + 10)) --users "$USERS" 2>/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null

listening() { ss -ltn | grep -q ":$1 "; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

start() { # name: sets PID and PORT
	local dir=$OUT/$1
	rm -rf "$dir" && mkdir -p "$dir"
	case $1 in
	ours)
		PORT=19100
		(cd "$dir" && exec twistd -n --pidfile= chat --port "tcp:$PORT:interface=127.0.0.1" \
			--users "$USERS" --database "$dir/chat.sqlite") >"$dir/server.log" 2>&1 &
		;;
	bare)
		PORT=19000
		(cd "$ROOT" && exec python -m benchmarks.baseline $PORT) >"$dir/server.log" 2>&1 &
		;;
	floor)
		PORT=19001
		(cd "$ROOT" && exec python -m benchmarks.baseline $PORT --floor "$dir/floor.sqlite") \
			>"$dir/server.log" 2>&1 &
		;;
	ngircd)
		PORT=16667 # as the configuration says
		cp "$NGIRCD_CONF" "$dir/ngircd.conf"
		ngircd -n -f "$dir/ngircd.conf" >"$dir/server.log" 2>&1 &
		;;
	esac
	PID=$!
	for _ in $(seq 100); do
		listening $PORT && return 0
		kill -0 $PID 2>/dev/null || break
		sleep 0.1
	done
	echo "$1 did not start: $(tail -3 "$dir/server.log")" >&2
	return 1
}

stop() {
	kill "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	sleep 0.5
}

trap 'stop; exit 130' INT TERM
for r in $(seq "$REPS"); do
	for s in $SERVERS; do
		start "$s" || continue
		# Until the server is idle: under 3% of a core over a second.
		for _ in $(seq 60); do
			a=$(ticks $PID); sleep 1; b=$(ticks $PID)
			[ $((b - a)) -le 3 ] && break
		done
		if [ "$s" = ngircd ]; then
			X="--proto irc --concurrency 10 --irc-oper bench:bench --irc-umode +F"
		else
			X="--proto chat --concurrency 50"
		fi
		timeout -k 5 180 "$LG" --label "$s" --server-pid $PID --host 127.0.0.1 --port $PORT $X \
			--users "$USERS" --scenario private --n "$N" --window "$WINDOW" --duration "$DUR" \
			--warmup "$WARM" --settle-max 10 --drain 5 --quickack --login-timeout 60 \
			>>"$RES" 2>>"$OUT/chatload.stderr"
		stop
	done
done

python3 - "$RES" <<'EOF'
import json, statistics, sys

runs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("deliveries_per_s") and d.get("server_cpu_pct", -1) > 0:
        runs.setdefault(d["label"], []).append(d)
ngircd = statistics.median(d["deliveries_per_s"] for d in runs.get("ngircd", [])) if "ngircd" in runs else None
print(f"{'server':8} {'runs':>4} {'messages/s':>11} {'vs ngIRCd':>9} {'CPU µs/msg':>10} {'CPU %':>6}  complete")
for label, ds in runs.items():
    rate = statistics.median(d["deliveries_per_s"] for d in ds)
    cpu = statistics.median(d["server_cpu_pct"] / 100 / d["deliveries_per_s"] * 1e6 for d in ds)
    pct = statistics.median(d["server_cpu_pct"] for d in ds)
    ratio = f"{rate / ngircd:.2f}x" if ngircd else "-"
    done = min(d.get("completeness", 0) for d in ds)
    print(f"{label:8} {len(ds):4} {rate:11,.0f} {ratio:>9} {cpu:10.1f} {pct:6.0f}  {done:.4f}")
EOF
echo "runs: $RES" >&2
