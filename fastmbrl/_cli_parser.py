"""The ``fastmbrl`` command's argument parser (``fastmbrl.cli`` runs the commands): the ``run``,
``sweep``, ``envs``, ``plot``, ``eval`` and ``export`` subcommands and their flags, with the
defaults the help texts name read from ``fastmbrl.config``.
"""
import argparse


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message}\n{self.format_usage().strip()}")


def _build_parser():
    from fastmbrl.algorithms import available
    from fastmbrl.config import AlgorithmConfig, RunConfig

    parser = _Parser(prog="fastmbrl", description="Fast model-based RL (PETS) on a plain CPU.")
    sub = parser.add_subparsers(dest="command", metavar="{run,sweep,envs,plot,eval,export}",
                                parser_class=_Parser)
    p_run = sub.add_parser("run", help="train on an environment (or resume a run)",
                           description="Train an algorithm (default PETS, Algorithm 1) on an "
                                       "environment.")
    p_run.add_argument("env", nargs="?", help="environment id (see 'fastmbrl envs')")
    p_run.add_argument("--algorithm", metavar="NAME",
                       help=f"one of {', '.join(available())} (default {AlgorithmConfig.name})")
    p_run.add_argument("--episodes", type=int, help="episodes, for episode-based algorithms "
                                                    "such as pets (default: the env's)")
    p_run.add_argument("--steps", type=int, help="environment steps, for step-based algorithms "
                                                 "(pets refuses it)")
    p_run.add_argument("--seed", type=int, help=f"random seed (default {RunConfig.seed})")
    p_run.add_argument("--out", metavar="DIR", help="output folder (default runs/ENV-sSEED)")
    p_run.add_argument("--config", metavar="FILE", help="JSON file of settings (see fastmbrl.config)")
    p_run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one setting, e.g. --set planner.horizon=20 (repeatable)")
    p_run.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("envs", help="list the known environments",
                   description="List the environments fastmbrl has exact reward functions for.")
    _add_sweep_parser(sub)
    _add_plot_parser(sub)
    _add_eval_parser(sub)
    _add_export_parser(sub)
    return parser


def _add_plot_parser(sub):
    p_plot = sub.add_parser(
        "plot", help="learning curves, time split and model calibration of runs or sweeps",
        description="Write learning_curve.png (return against environment steps and wall time; "
                    "mean and standard-error band per setting of a sweep folder), time_split.png "
                    "and, for a run folder with a checkpointed model, calibration.png. Needs the "
                    "plot extra (matplotlib).")
    p_plot.add_argument("dirs", metavar="DIR", nargs="*", help="run or sweep folders")
    p_plot.add_argument("--out", metavar="DIR",
                        help="folder for the PNGs (default: DIR when one is given, else .)")
    p_plot.add_argument("--model", metavar="PATH", help="a saved GaussianEnsemble (model.npz)")
    p_plot.add_argument("--data", metavar="BUFFER",
                        help="a saved ReplayBuffer of held-out transitions for --model")


def _add_eval_parser(sub):
    p = sub.add_parser(
        "eval", help="play episodes of a run's trained controller",
        description="Load the trained agent of a run folder (its last checkpoint) and play "
                    "episodes in the run's environment: the deterministic policy of sac, mbpo, "
                    "mve, svg and dhmbpo runs, the planner of pets runs. Prints each return and "
                    "their mean and standard deviation.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (fastmbrl run --out)")
    p.add_argument("--episodes", type=int, default=5, help="episodes to play (default 5)")
    p.add_argument("--seed", type=int,
                   help="seed of the episodes' resets (default: the run's seed, which replays "
                        "a step-based run's own evaluations)")
    p.add_argument("--video", metavar="DIR",
                   help="record every episode as MP4 into DIR (needs moviepy)")


def _add_export_parser(sub):
    p = sub.add_parser(
        "export", help="write a run's policy and model as ONNX, C or NumPy files",
        description="Export the policy (sac, mbpo, mve, svg, dhmbpo runs) and the dynamics model "
                    "(pets, mbpo, mve, svg, dhmbpo runs) of a run folder: onnx (policy.onnx, "
                    "model.onnx), c (fastmbrl_policy.c/.h, fastmbrl_model.c/.h) or numpy "
                    "(policy.npz + fastmbrl_policy.py, model.npz + fastmbrl_model.py). See "
                    "docs/controller.md.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (fastmbrl run --out)")
    p.add_argument("--format", required=True, dest="fmt", metavar="{onnx,c,numpy}",
                   help="onnx, c or numpy")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (made if missing)")
    p.add_argument("--what", choices=("all", "policy", "model"), default="all",
                   help="what to export (default all: everything the run has)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _add_sweep_parser(sub):
    p = sub.add_parser(
        "sweep", help="run seeds x settings, each a resumable run folder (Ray when installed)",
        description="Run every (seed, setting) of a grid as its own run folder DIR/<setting>/"
                    "seed_<s>; rerunning skips finished trials and resumes the others. Writes "
                    "DIR/summary.csv and prints it as a markdown table.")
    p.add_argument("env", help="environment id (see 'fastmbrl envs')")
    p.add_argument("--algorithm", help="algorithm (passed to fastmbrl.run when given)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--episodes", type=int, help="model-based episodes per trial")
    group.add_argument("--steps", type=int, help="environment steps per trial (step-based "
                                                  "algorithms)")
    p.add_argument("--config", metavar="FILE", help="JSON file of settings for every trial")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one setting for every trial (repeatable)")
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0-4 or 0,2,5 (default 0)")
    p.add_argument("--grid", metavar="KEY=V1,V2", action="append", default=[],
                   help="settings to cross, e.g. --grid planner.horizon=10,20 or "
                        "--grid model.hidden=[64,64],[200,200] (repeatable)")
    p.add_argument("--out", metavar="DIR", required=True, help="the sweep folder")
    p.add_argument("--workers", type=int,
                   help="parallel trials on this machine (default: the number of cores; 1 runs "
                        "them one after another without Ray)")
    p.add_argument("--address", help="join the Ray cluster at this address (e.g. auto)")
    p.add_argument("--rerun-changed", action="store_true",
                   help="run again the finished trials whose settings differ from this request "
                        "(their folders are moved aside); without it such a rerun is refused")
    p.add_argument("--threshold", type=float,
                   help="also report the episodes and steps until a return >= this")
    p.add_argument("--quiet", action="store_true", help="only the final table")
