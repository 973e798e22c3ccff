#!/bin/sh
# An agent in "another language": it refunds part of a charge with curl against a world served
# by `tether sim serve`, and retries the refund when the connection drops (curl exits 52 on an
# empty reply, 56 on a reset). With an idempotency key the retry is safe; without one it is the
# naive loop that refunds twice when the first response was lost after the write.
#
# usage: curl_agent.sh PAYMENTS_BASE_URL CHARGE AMOUNT [IDEMPOTENCY_KEY]
set -u
base="$1"
charge="$2"
amount="$3"
key="${4:-}"
auth="sk_test_curl_agent:"

# Read the charge first, as an agent checks what it is about to refund.
curl -sS -f -u "$auth" "$base/v1/charges/$charge" > /dev/null || exit 1

tries=0
while [ "$tries" -lt 3 ]; do
  tries=$((tries + 1))
  if [ -n "$key" ]; then
    curl -sS -f -u "$auth" -H "Idempotency-Key: $key" \
      -d "charge=$charge" -d "amount=$amount" "$base/v1/refunds"
  else
    curl -sS -f -u "$auth" -d "charge=$charge" -d "amount=$amount" "$base/v1/refunds"
  fi
  status=$?
  if [ "$status" -eq 0 ]; then
    exit 0
  fi
  case "$status" in
    52|56|7) ;;          # no response, a reset, a refused connection: try again
    *) exit "$status" ;; # an answer that is an error (-f): give up
  esac
done
exit 1
