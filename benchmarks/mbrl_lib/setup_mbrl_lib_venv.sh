#!/bin/bash
# Creates a virtual environment for run_mbrl_lib_mbpo.py and run_mbrl_lib_pets.py: mbrl-lib 0.2.0 with the CPU build of torch
# (default /tmp/mbrl-venv; VENV=... to change, PY=... for the interpreter, Python 3.11).
set -euo pipefail
PY=${PY:-python3}
V=${VENV:-/tmp/mbrl-venv}
[ -x $V/bin/python ] || $PY -m venv $V
$V/bin/pip install torch==2.13.0            # CPU wheel from local disk; never unpinned
$V/bin/pip install mbrl==0.2.0              # pins gymnasium 0.26.3, hydra-core 1.0.3, omegaconf 2.0.6
$V/bin/pip install mujoco                   # 4.0.1 works with gymnasium 0.26.3's InvertedPendulum-v4
$V/bin/pip install "numpy<2"                # gymnasium 0.26.3 uses np.bool8 (removed in numpy 2)
# hydra-core 1.0.3 does not import on Python 3.11 (dataclass instances as field defaults);
# rewrite those 9 defaults as field(default_factory=...). Idempotent.
sed -i -E 's/^(\s+[a-z_]+: ([A-Z][A-Za-z]*)) = \2\(\)$/\1 = field(default_factory=\2)/' \
  "$($V/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/hydra/conf/__init__.py"
$V/bin/python -c "import hydra.utils, mbrl.algorithms.mbpo, gymnasium; gymnasium.make('InvertedPendulum-v4'); print('venv ok')"
