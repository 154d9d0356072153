# Shared helpers of the end-to-end scripts (sourced, after `cd` to the scratch folder).
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_error "text in the message" cmd...: the command fails, with that text, in at most two lines.
expect_error() {
  local want=$1; shift
  if "$@" >out.txt 2>err.txt; then fail "expected failure: $*"; fi
  grep -qF -- "$want" err.txt || { cat err.txt >&2; fail "message lacks '$want': $*"; }
  [ "$(wc -l < err.txt)" -le 2 ] || { cat err.txt >&2; fail "more than one error line: $*"; }
}
losses() { grep -o '"train_loss":[^,}]*' "$1/metrics.jsonl"; }       # RUN_DIR
last() { grep -o "\"$2\":[0-9.e-]*" "$1/metrics.jsonl" | tail -1 | cut -d: -f2; }   # RUN_DIR KEY
first() { grep -o "\"$2\":[0-9.e-]*" "$1/metrics.jsonl" | head -1 | cut -d: -f2; }  # RUN_DIR KEY
png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"; }
