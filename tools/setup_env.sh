#!/usr/bin/env bash
# Create .venv/ at the repo root with the pinned OpenMMLab stack and mmvminet (editable).
#
#   bash tools/setup_env.sh            # CPU machine (what CI and the README use)
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 bash tools/setup_env.sh   # build mmcv's CUDA ops too
#
# Order matters (see docs/install.md, "Why the setup is shaped like this"):
#   torch + torchvision -> setuptools<82 -> mmcv 2.1.0 with ops (built against that torch, C++20
#   where torch's headers demand it, cached by torch version) -> the rest -> mmvminet.
# A second run checks every step and exits in seconds. Any failure stops with its reason, and the
# environment is marked incomplete so the next run redoes the missing steps.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
CACHE_ROOT="${MMVMINET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmvminet}"
STAMP="$VENV/.mmvminet-setup-complete"
MIN_FREE_GB=12

step() { printf '\n[setup] %s\n' "$*"; }
die() { printf '\n[setup] FAILED: %s\n' "$*" >&2; rm -f "$STAMP"; exit 1; }
trap 'die "step \"${CURRENT_STEP:-?}\" exited with status $? (see the output above)"' ERR

pin() {  # pin NAME -> the exact version in the constraints file
    local v
    v=$(grep -i -E "^$1==" "$CONSTRAINTS" | head -n1 | cut -d= -f3)
    [ -n "$v" ] || die "no pin for $1 in $CONSTRAINTS"
    echo "$v"
}

# ---- preflight: say clearly what is missing before spending minutes --------------------------
CURRENT_STEP=preflight
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 8)' || die "$PYTHON is older than 3.8"
command -v g++ >/dev/null || die "no C++ compiler (g++) on PATH: mmcv's ops are compiled from source (apt-get install g++)"
[ -f "$CONSTRAINTS" ] || die "missing $CONSTRAINTS"
if [ ! -f "$STAMP" ]; then
    free_gb=$(df -Pk "$ROOT" | awk 'NR==2 {print int($4/1048576)}')
    [ "$free_gb" -ge "$MIN_FREE_GB" ] || die "only ${free_gb} GB free under $ROOT; the stack needs about $MIN_FREE_GB GB (torch alone is 5.5 GB)"
fi

# ---- venv -------------------------------------------------------------------------------------
CURRENT_STEP=venv
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q -c "$CONSTRAINTS" pip || die "pip cannot reach the package registry"

# ---- 1. torch + torchvision first (mmpretrain imports torchvision; both from PyPI) -----------
CURRENT_STEP="torch $(pin torch) + torchvision $(pin torchvision)"
step "$CURRENT_STEP"
"${PIP[@]}" install -q -c "$CONSTRAINTS" torch torchvision
TORCH_VER=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')

# ---- 2. setuptools: torch wants >=77.0.3, mmcv's build and mmengine want pkg_resources (<82) --
CURRENT_STEP="setuptools $(pin setuptools)"
step "$CURRENT_STEP"
"${PIP[@]}" install -q -c "$CONSTRAINTS" setuptools wheel ninja

# ---- 3. mmcv with ops, compiled against this torch, cached by torch version -------------------
CURRENT_STEP="mmcv $(pin mmcv) with ops"
MMCV_VER=$(pin mmcv)
FLAVOUR=cpu
[ "${FORCE_CUDA:-0}" = "1" ] && FLAVOUR="cuda${TORCH_CUDA_ARCH_LIST:-native}"
WHEEL_DIR="$CACHE_ROOT/mmcv-$MMCV_VER-torch$TORCH_VER-$FLAVOUR-py$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
have_mmcv_ops() {
    "$PY" - <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
import mmcv, mmcv.ops  # noqa: F401  (the compiled _ext must load against this torch)
sys.exit(0 if md.version('mmcv') == mmcv.__version__ else 1)
EOF
}
if have_mmcv_ops && [ "$("$PY" -c 'import mmcv; print(mmcv.__version__)')" = "$MMCV_VER" ] \
        && [ -f "$WHEEL_DIR/.built-against" ] && [ "$(cat "$WHEEL_DIR/.built-against")" = "$TORCH_VER" ]; then
    step "$CURRENT_STEP: already installed for torch $TORCH_VER"
else
    mkdir -p "$WHEEL_DIR"
    if ! ls "$WHEEL_DIR"/mmcv-"$MMCV_VER"-*.whl >/dev/null 2>&1; then
        step "$CURRENT_STEP: compiling against torch $TORCH_VER (about 15 minutes on 2 cores)"
        BUILD=$(mktemp -d)
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VER"
        tar -xzf "$BUILD"/mmcv-"$MMCV_VER".tar.gz -C "$BUILD"
        SRC="$BUILD/mmcv-$MMCV_VER"
        # mmcv 2.1.0 hard-codes -std=c++17 (cxx and nvcc); torch's headers from 2.14 refuse anything
        # below C++20. Raise the standard only when the installed torch's headers say so.
        if "$PY" "$ROOT/tools/torch_cxx_standard.py" --needs-cxx20; then
            step "torch $TORCH_VER requires C++20: building mmcv with -std=c++20"
            sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
            grep -q -- '-std=c++20' "$SRC/setup.py" || die "could not switch mmcv's setup.py to C++20"
        fi
        (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$BUILD/dist" .)
        mv "$BUILD"/dist/mmcv-"$MMCV_VER"-*.whl "$WHEEL_DIR"/
        rm -rf "$BUILD"
    else
        step "$CURRENT_STEP: reusing $WHEEL_DIR"
    fi
    # --force-reinstall: pip must not keep an mmcv that was built against another torch.
    "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-"$MMCV_VER"-*.whl
    echo "$TORCH_VER" > "$WHEEL_DIR/.built-against"
fi

# ---- 4. the rest of the stack, then mmvminet itself ------------------------------------------
CURRENT_STEP="OpenMMLab libraries and runtime dependencies"
step "$CURRENT_STEP"
"${PIP[@]}" install -q -c "$CONSTRAINTS" \
    -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/optional.txt" \
    -r "$ROOT/requirements/tests.txt"
CURRENT_STEP="mmvminet (editable)"
step "$CURRENT_STEP"
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps --no-build-isolation -e "$ROOT"

# ---- 5. the stack must import as a whole; torch must still be the pinned one ------------------
CURRENT_STEP="import check"
"$PY" - <<EOF
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmpretrain, pkg_resources  # noqa
import mmpretrain.models  # noqa  (needs torchvision)
import mmvminet
assert torch.__version__.split('+')[0] == '$(pin torch)', torch.__version__
print(f'[setup] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, mmvminet {mmvminet.__version__}')
EOF
touch "$STAMP"
