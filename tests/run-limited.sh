#!/bin/bash
# make check runs every .sh test through this (SH_LOG_COMPILER): a test
# that hangs is stopped instead of holding the suite until CI gives up.
# At the limit the test's process group gets SIGTERM, so its cleanup
# trap (functions.sh) stops the processes it started; 30 s later,
# SIGKILL.  The limits are far above a test's time on a loaded machine;
# RP_TEST_LIMIT (seconds) overrides them.
test=$1
case ${test##*/} in
  test-vm*) limit=3000 ;;       # up to four guests of 540 s each
  *) limit=900 ;;
esac
limit=${RP_TEST_LIMIT:-$limit}
start=$SECONDS
timeout --kill-after=30 "$limit" bash "$@"
rc=$?
# One line per test for scripts/test's list of the slowest tests.
echo "# elapsed: $((SECONDS - start)) s"
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "FAIL: ${test##*/} still running after $limit s: stopped" >&2
  exit 1
fi
exit $rc
