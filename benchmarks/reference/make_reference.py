"""Convert erl_lib's published Gym learning curves (MBPO reproduced, DHMBPO) to the suite's format.

Usage (MIRROR: a clone or bare git directory of https://github.com/4kubo/erl_lib)::

    python benchmarks/reference/make_reference.py /work/.mirror/4kubo+erl_lib/repo
    python benchmarks/reference/make_reference.py MIRROR --check-only    # print the means only

Reads ``results/main/gym/mbpo/<Env>.csv`` and ``results/main/gym/esvg/<Env>.csv`` (DHMBPO is
called "esvg" there) at ``--commit`` (default HEAD) with ``git show``, so the mirror needs no
work tree, and writes ``mbpo_erl_lib.csv`` and ``dhmbpo_erl_lib.csv`` next to this script with the
columns ``env,algorithm,seed,steps,return,wall_s``:

- ``env``: fastmbrl's id (``Hopper`` -> ``Hopper-v5``; the source ran Gym's ``*-v4``),
- ``algorithm``: ``mbpo`` / ``dhmbpo``,
- ``seed``: the source's seed as an integer (MBPO's "0.0" -> 0),
- ``steps``: the source's ``step`` rounded to an integer (MBPO HalfCheetah's steps are
  multiples of 985.22 in the source),
- ``return``: the source's ``reward`` (the evaluation return), unchanged,
- ``wall_s``: the source's ``time`` (seconds since the run started), rounded to 0.01 s.

The ``critic_loss`` column of the DHMBPO files is dropped. Rows are sorted by env, seed, steps.
Then it prints the means the paper publishes next to the same means computed from the written
files (markdown, for benchmarks/reference/README.md): per seed the evaluation nearest to the step
(ties: the later one), then the mean over seeds; for MBPO also the evaluation after that one.
"""
import argparse
import csv
import io
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ENVS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid")
SOURCES = {  # output name -> (source folder, algorithm name in the output)
    "mbpo_erl_lib.csv": ("results/main/gym/mbpo", "mbpo"),
    "dhmbpo_erl_lib.csv": ("results/main/gym/esvg", "dhmbpo"),
}
FIELDS = ("env", "algorithm", "seed", "steps", "return", "wall_s")

# The means the paper / repository publish (return at the step; MBPO's wall hours to 100k).
PUBLISHED = {
    "mbpo": {"HalfCheetah": {25_000: 5127, 50_000: 8038, 100_000: 9603, "hours": 2.4},
             "Hopper": {25_000: 604, 50_000: 1836, 100_000: 3320, "hours": 7.6},
             "Walker2d": {25_000: 445, 50_000: 862, 100_000: 3498, "hours": 4.0},
             "Ant": {25_000: 724, 50_000: 786, 100_000: 1458, "hours": 4.2},
             "Humanoid": {25_000: 329, 50_000: 394, 100_000: 587, "hours": 4.1}},
    "dhmbpo": {"HalfCheetah": {20_000: 5381, 100_000: 9878, "hours": None},
               "Hopper": {20_000: 2101, 100_000: 3399, "hours": None},
               "Walker2d": {20_000: 1486, 100_000: 6457, "hours": None},
               "Ant": {20_000: 2393, 100_000: 6064, "hours": None},
               "Humanoid": {20_000: None, 100_000: 5186, "hours": None}},
}


def git(mirror, *args):
    """stdout of ``git -C mirror args`` (raises SystemExit with git's message on failure)."""
    proc = subprocess.run(["git", "-C", mirror, *args], check=False, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"make_reference: git {' '.join(args)} failed in {mirror!r}: "
                         f"{proc.stderr.strip()}")
    return proc.stdout


def convert(mirror, commit):
    """``{output name: [row dicts]}`` read from the mirror at ``commit``."""
    out = {}
    for name, (folder, algorithm) in SOURCES.items():
        rows = []
        for env in ENVS:
            text = git(mirror, "show", f"{commit}:{folder}/{env}.csv")
            reader = csv.DictReader(io.StringIO(text))
            missing = {"step", "time", "reward", "seed"} - set(reader.fieldnames or ())
            if missing:
                raise SystemExit(f"make_reference: {folder}/{env}.csv has no {sorted(missing)} "
                                 f"column (columns: {reader.fieldnames})")
            for r in reader:
                rows.append({"env": f"{env}-v5", "algorithm": algorithm,
                             "seed": int(float(r["seed"])),
                             "steps": round(float(r["step"])),
                             "return": float(r["reward"]),
                             "wall_s": round(float(r["time"]), 2)})
        rows.sort(key=lambda r: (r["env"], r["seed"], r["steps"]))
        out[name] = rows
    return out


def write_csv(path, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for r in rows:
        w.writerow([r["env"], r["algorithm"], r["seed"], r["steps"], repr(r["return"]),
                    f"{r['wall_s']:.2f}"])
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return [{"env": r["env"], "algorithm": r["algorithm"], "seed": int(r["seed"]),
                 "steps": int(r["steps"]), "return": float(r["return"]),
                 "wall_s": float(r["wall_s"])} for r in csv.DictReader(fh)]


def mean_at(rows, env, step, column="return", later=0):
    """Mean over seeds of ``column`` at each seed's evaluation nearest to ``step`` (ties: the
    later one), or ``later`` evaluations after it."""
    by_seed = {}
    for r in rows:
        if r["env"] == env:
            by_seed.setdefault(r["seed"], []).append(r)
    values = []
    for seed_rows in by_seed.values():
        seed_rows.sort(key=lambda r: r["steps"])
        dist = [abs(r["steps"] - step) for r in seed_rows]
        best = min(dist)
        i = max(k for k, d in enumerate(dist) if d == best) + later
        values.append(seed_rows[min(i, len(seed_rows) - 1)][column])
    return float(np.mean(values)), len(values)


def check_table(files):
    """Markdown lines: the published means against the ones computed from ``files``."""
    lines = [("| algorithm | env | seeds | at | published | nearest evaluation | "
              "next evaluation |"), "|---|---|---|---|---|---|---|"]
    for name, (_, algorithm) in SOURCES.items():
        rows = files[name]
        for env in ENVS:
            env_id = f"{env}-v5"
            for at, pub in PUBLISHED[algorithm][env].items():
                if at == "hours":
                    near, n = mean_at(rows, env_id, 100_000, "wall_s")
                    nxt, _ = mean_at(rows, env_id, 100_000, "wall_s", later=1)
                    cells = ["wall to 100k", "-" if pub is None else f"{pub} h",
                             f"{near / 3600:.2f} h",
                             f"{nxt / 3600:.2f} h" if algorithm == "mbpo" else "-"]
                else:
                    near, n = mean_at(rows, env_id, at)
                    nxt, _ = mean_at(rows, env_id, at, later=1)
                    cells = [f"{at // 1000}k", "-" if pub is None else f"{pub}", f"{near:.0f}",
                             f"{nxt:.0f}" if algorithm == "mbpo" else "-"]
                lines.append(f"| {algorithm} | {env_id} | {n} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mirror", help="a clone or bare git directory of 4kubo/erl_lib")
    p.add_argument("--commit", default="HEAD", help="commit to read (default HEAD)")
    p.add_argument("--out", default=HERE, help="folder for the CSVs (default: this script's)")
    p.add_argument("--check-only", action="store_true",
                   help="print the means of the CSVs already in --out, convert nothing")
    args = p.parse_args(argv)
    if args.check_only:
        files = {name: read_csv(os.path.join(args.out, name)) for name in SOURCES}
    else:
        commit = git(args.mirror, "rev-parse", args.commit).strip()
        converted = convert(args.mirror, commit)
        os.makedirs(args.out, exist_ok=True)
        for name, rows in converted.items():
            write_csv(os.path.join(args.out, name), rows)
        files = {name: read_csv(os.path.join(args.out, name)) for name in SOURCES}
        print(f"source: {git(args.mirror, 'log', '-1', '--format=%H %ci', commit).strip()}")
        for name, rows in files.items():
            print(f"wrote {os.path.join(args.out, name)}: {len(rows)} rows")
    print("\n".join(check_table(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
