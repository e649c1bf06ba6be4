#!/bin/bash
# Replies waiting for clients that do not read them are bounded
# server-wide (--max-reply-buffer, 64 MiB by default), not only per
# connection: 40 such connections used to grow a 64 MiB donor by about
# 650 MiB.  A well-behaved client keeps being served meanwhile, and
# when the budget is full, connections that have not read anything for
# 10 s are closed so that others get it.  See tests/reply_budget.py.
source "${srcdir:-.}/functions.sh"
requires python3

# Under AddressSanitizer a small quarantine (its default is 256 MiB of
# freed blocks held back), so that what is measured is the budget, not
# the sanitizer; reply_budget.py allows for the rest (RP_SANITIZERS).
[ "${RP_SANITIZERS:-no}" = yes ] &&
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
export RP_SANITIZERS
MS_SIZE=64M
start_memserver s1
python3 "${srcdir:-.}/reply_budget.py" "$MS_PORT_s1" "$MS_PID_s1" ||
  fail "reply memory not bounded, or a well-behaved client not served"
grep -q "has not read its replies" "$TMP/s1.log" ||
  fail "no log line for the connections closed for not reading"
echo "PASS"
