#!/bin/sh
# Once the server answers: the namespace the workers use, with its retention, and the search
# attributes the workflows upsert (warmup/search_attributes.py), all Keyword. Safe to run again.
set -eu
: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS to the server's host:port}"
: "${TEMPORAL_NAMESPACE:?set TEMPORAL_NAMESPACE}"
: "${SEARCH_ATTRIBUTES:?set SEARCH_ATTRIBUTES to the names, separated by spaces}"
RETENTION="${NAMESPACE_RETENTION:-7d}"

tries=0
until temporal operator cluster health >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "Temporal at $TEMPORAL_ADDRESS is not healthy after 2 minutes" >&2; exit 1; fi
  sleep 2
done

if temporal operator namespace describe -n "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
  temporal operator namespace update -n "$TEMPORAL_NAMESPACE" --retention "$RETENTION"
else
  temporal operator namespace create -n "$TEMPORAL_NAMESPACE" --retention "$RETENTION"
fi

for NAME in $SEARCH_ATTRIBUTES; do
  if temporal operator search-attribute list -n "$TEMPORAL_NAMESPACE" | grep -qw "$NAME"; then
    echo "search attribute $NAME exists"
  else
    temporal operator search-attribute create -n "$TEMPORAL_NAMESPACE" --name "$NAME" --type Keyword
  fi
done
echo "namespace $TEMPORAL_NAMESPACE ready (retention $RETENTION; search attributes: $SEARCH_ATTRIBUTES)"
