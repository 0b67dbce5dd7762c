#!/usr/bin/env bash
# Config review of a pull request: `scopeml-config check`, then the semantic diff of the configs against
# the base commit, posted as one markdown comment on the pull request (updated on every push).
#
#   .github/scripts/config_review.sh BASE [--conf DIR] [--out FILE]
#
#   BASE        the commit the pull request merges into (CI: github.event.pull_request.base.sha)
#   --conf DIR  the config folder (default: the one scopeml-config ships with)
#   --out FILE  write the comment body to FILE instead of posting it (a local run, a dry run)
#
# Posting needs gh with GH_TOKEN, PR_NUMBER and GITHUB_REPOSITORY, as GitHub Actions provides them.
# SCOPEML_CONFIG: the command to run (default: .venv/bin/scopeml-config when present, else scopeml-config).
# Exit status: that of `scopeml-config check` (the comment is posted first); 2 on usage errors.
set -euo pipefail

usage() { sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
base="" out=""
conf=()
while [ $# -gt 0 ]; do
  case "$1" in
    --conf) [ $# -ge 2 ] || usage; conf=(--conf "$2"); shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "config_review.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$base" ] || usage; base="$1"; shift ;;
  esac
done
[ -n "$base" ] || usage

if [ -n "${SCOPEML_CONFIG:-}" ]; then
  read -r -a cmd <<< "$SCOPEML_CONFIG"
elif [ -x .venv/bin/scopeml-config ]; then
  cmd=(.venv/bin/scopeml-config)
else
  cmd=(scopeml-config)
fi

body=$(mktemp)
check_log=$(mktemp)
trap 'rm -f "$body" "$check_log"' EXIT

status=0
"${cmd[@]}" check ${conf[@]+"${conf[@]}"} > "$check_log" 2>&1 || status=$?
cat "$check_log"
"${cmd[@]}" diff "$base" ${conf[@]+"${conf[@]}"} --format markdown > "$body"
if [ "$status" -ne 0 ]; then
  {
    echo; echo "**\`scopeml-config check\` fails:**"; echo
    echo '```'; tail -n 60 "$check_log"; echo '```'
  } >> "$body"
else
  echo "<sub>scopeml-config check: $(tail -n 1 "$check_log")</sub>" >> "$body"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$body" >> "$GITHUB_STEP_SUMMARY"
fi

if [ -n "$out" ]; then
  cp "$body" "$out"
  echo "config review written to $out"
  exit "$status"
fi

: "${PR_NUMBER:?set PR_NUMBER (or pass --out FILE)}" "${GITHUB_REPOSITORY:?set GITHUB_REPOSITORY (or pass --out FILE)}"
marker=$(head -n 1 "$body")  # <!-- scopeml-config-review -->: how the comment is found again on the next push
post() {
  local existing
  existing=$(gh api "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" --paginate \
    --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)
  if [ -n "$existing" ]; then
    gh api -X PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$existing" -F "body=@$body" > /dev/null
  else
    gh pr comment "$PR_NUMBER" --repo "$GITHUB_REPOSITORY" --body-file "$body"
  fi
}
# A pull request from a fork gets a read-only token: the review stays in the job summary instead.
post || echo "::warning::could not post the config review comment; it is in the job summary"
exit "$status"
