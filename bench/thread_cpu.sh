# Sourced by bench/workers.sh and bench/scaling.sh: the CPU each thread of a
# broker used over a run.
#
#   before=$(thread_ticks PID); ...; after=$(thread_ticks PID)
#   thread_cpu "$before" "$after" SECONDS   ->  "petrel 98% petrel-io-1 12% "

# "tid name cpu-ticks" per thread: user + system time, fields 14 and 15 of
# its stat, counted after the name (FlashMQ's thread names have spaces).
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    echo "$(basename "$t") $(tr ' ' _ <"$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done | LC_ALL=C sort
}

# Each thread that used at least 1 % of a core between the two readings.
thread_cpu() {
  LC_ALL=C join <(echo "$1") <(echo "$2") | awk -v s="$3" -v hz="$(getconf CLK_TCK)" \
    '{ p = ($5 - $3) / hz / s * 100; if (p >= 1) printf "%s %.0f%% ", $2, p }'
}
