#!/bin/bash
# test-write-unsent.sh with rampool-nbd as the front end instead of nbdkit
# (functions.sh: RP_FRONTEND): the same sequence, the same checks.
RP_FRONTEND=nbd exec "${srcdir:-.}/test-write-unsent.sh"
