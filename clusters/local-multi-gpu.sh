#!/usr/bin/env bash
# Start a single-node Ray on a multi-GPU box for ddecs-search: all GPUs, fractional GPUs per trial,
# dashboard on 127.0.0.1, token authentication on.
#
#   clusters/local-multi-gpu.sh [--gpus N] [--cpus N] [--port P] [--dry-run]
#
# Every GPU trains trials. Latency and energy are measured on the trials' own devices under the search's
# measurement lease (one measurement at a time per experiment; clusters/README.md "Where latency and
# energy are measured"); no GPU is set aside for it.
#
# Then, in the same shell environment (RAY_AUTH_MODE=token and the token file, see the printed lines):
#   ddecs-search run my_space.yaml --address auto --storage /data/experiments
# with `resources: {cpu: 2, gpu: 0.25}` in the space: 4 trials share each training GPU.
# Stop it with `ray stop` (this ends every Ray process of your user on this box).
set -euo pipefail

gpus=""
cpus=""
port=6379
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) gpus="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-multi-gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$gpus" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L | grep -c '^GPU ')
  else
    echo "local-multi-gpu.sh: nvidia-smi not found; pass --gpus N" >&2
    exit 2
  fi
fi
case "$gpus" in ''|*[!0-9]*) echo "local-multi-gpu.sh: --gpus must be a whole number, got '$gpus'" >&2; exit 2 ;; esac
[ -n "$cpus" ] || cpus=$(nproc)

args=(--head "--port=$port" "--num-cpus=$cpus" --dashboard-host=127.0.0.1 --dashboard-port=8265)
envs=(RAY_AUTH_MODE=token "RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
      RAY_USAGE_STATS_ENABLED=0)
args+=("--num-gpus=$gpus")

if [ "$dry_run" = 1 ]; then
  printf 'env'; printf ' %q' "${envs[@]}"; printf ' ray start'; printf ' %q' "${args[@]}"; printf '\n'
  exit 0
fi

command -v ray >/dev/null 2>&1 || { echo "local-multi-gpu.sh: 'ray' not found: activate the project's venv" >&2; exit 2; }
token="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
if [ ! -s "$token" ]; then
  mkdir -p "$(dirname "$token")"
  (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "$token")
fi
env "${envs[@]}" ray start "${args[@]}"

cat <<EOF

Ray is up: $gpus GPU(s) for trials.
In the shell that runs the search:
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token
  ddecs-search run SPACE.yaml --address auto --storage /data/experiments
Dashboard (this machine only): http://127.0.0.1:8265
EOF
