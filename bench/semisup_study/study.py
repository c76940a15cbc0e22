"""One invocation of the study: a part's runs, the search of each arm, its finals, its curves.

A part asks for arms; an arm asks for the encoders it starts from and the teachers it
distils, which are run (or reused from --out: the same command finds its record) on demand.
With `projection` set nothing runs: each training run scores `projection(point)` and takes
its projected seconds, so that --dry_run walks exactly the code path of a real part.
"""
import glob
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Optional

from bench import harness
from bench.semisup_study import pixels
from bench.semisup_study import protocol as P
from bench.semisup_study import runner
from bench.semisup_study import search

PIXEL_SECONDS = 120  # the raw-pixel references (both methods, the subsets) on 2 Zen 4 cores


class Study:
    """State of one invocation (one part, or a projection of several)."""

    def __init__(self, s: P.Scale, scale_name: str, out: str, results_dir: str, cpu: dict,
                 projection: Optional[Callable] = None, measured: Optional[dict] = None):
        self.s, self.scale_name, self.out, self.cpu = s, scale_name, out, cpu
        self.results_dir = results_dir
        self.precision = runner.precision_for(cpu)
        self.speeds = runner.Speeds(cpu, measured)
        self.runs_dir, self.logs_dir = os.path.join(out, "runs"), os.path.join(out, "logs")
        self.projection = projection
        self.projected_done = set()  # a projection's runs count once across its parts
        self.owner = None  # the arm whose runs are being made, or None: a dependency
        self.records = {"runs": {}, "arms": {}, "pretrains": {}}
        self._arms: Dict[tuple, dict] = {}
        self.started = time.perf_counter()

    # --- executing one run ---------------------------------------------------------------
    def _execute(self, run: P.Run, tag: str) -> dict:
        argv = (runner.command if tag == "train" else runner.test_command)(
            run, self.s, self.runs_dir, self.precision)
        model_dir = os.path.join(self.runs_dir, run.name)
        projected = (self.speeds.seconds(run) if tag == "train"
                     else runner.OVERHEAD_SECONDS["eval"])
        if self.projection:
            rec = self._projected(run, tag, argv, model_dir, projected)
        else:
            rec = runner.execute(argv, model_dir, self.logs_dir, tag)
            if tag == "train":
                self.speeds.record(run.kind, rec.get("images_per_second"))
        self._note(run.name + ("" if tag == "train" else ":test"), rec, projected, argv)
        return rec

    def _projected(self, run, tag, argv, model_dir, projected) -> dict:
        done = harness.read_json(os.path.join(model_dir, f"bench_{tag}.json"))
        key = (run.name, tag)
        reused = bool(done and done["argv"][1:] == argv[1:]) or key in self.projected_done
        self.projected_done.add(key)
        top1 = self.projection(dict(run.point)) if run.point else None
        return {"argv": argv, "wall_seconds": 0.0 if reused else projected, "reused": reused,
                "diverged": False, "result": {"top1": top1}}

    def _note(self, name: str, rec: dict, projected: float, argv):
        if rec.get("reused") and name in self.records["runs"]:
            return  # asked for again (the chosen trial): its first record stays
        top1 = (rec.get("result") or {}).get("top1")
        self.records["runs"][name] = {
            "command": runner.shown(argv, self.out), "owner": self.owner or "dependency",
            "projected_seconds": round(projected), "top1": top1,
            **{k: rec.get(k) for k in ("wall_seconds", "cpu_seconds", "images_per_second",
                                       "reused", "diverged", "load_average_after")}}
        if not self.projection:
            shown = f"top-1 {100 * top1:.2f}%  " if top1 is not None else (
                "diverged  " if rec.get("diverged") else "")
            flag = " (reused)" if rec.get("reused") else ""
            print(f"  {name}: {shown}{rec['wall_seconds']:.0f} s{flag}", flush=True)

    def _score(self, rec: dict) -> Optional[float]:
        return None if rec.get("diverged") else rec["result"]["top1"]

    # --- encoders, arms, teachers ------------------------------------------------------------
    def pretrain(self, net: str, seed: int) -> str:
        run = P.pretrain_run(self.s, net, seed)
        if run.name not in self.records["pretrains"]:
            self._execute(run, "train")
            curve = [] if self.projection else runner.knn_curve(
                os.path.join(self.runs_dir, run.name))
            self.records["pretrains"][run.name] = {
                "net": self.s.nets[net].label, "epochs": self.s.pretrain_epochs[net],
                "seed": seed, "batch": run.batch,
                "knn_curve": [list(p) for p in curve]}  # [step, top-1], as JSON keeps it
        return run.name

    def arm(self, arm: P.Arm, budget: P.Budget, only=None) -> dict:
        """The arm at `budget`: its search (seed 0, holdout), finals (test), curve. `only`:
        the subset seeds of this part (None: all the arm's); without the search's seed the
        search is the one its own part recorded (`recorded_search`). Seeds are keys as
        strings (as JSON keeps them)."""
        every = self.s.arm_seeds(arm, budget)
        seeds = tuple(x for x in every if only is None or x in only)
        cached = self._arms.get((arm.name, budget.name, seeds))
        if cached:
            return cached
        searching = seeds[0] == every[0]
        if arm.pretrain:
            for seed in sorted({P.pretrain_seed(self.s, x) for x in seeds}):
                self.pretrain(arm.pretrain, seed)
        teachers = {seed: self.teacher_run(arm, budget, seed) for seed in seeds}
        if searching:
            record = search.search(self.s.rule, lambda point: self._score(self._execute(
                P.arm_run(self.s, arm, budget, point, seeds[0], "holdout", teachers[seeds[0]]),
                "train")))
        else:
            record = self.recorded_search(arm, budget, every[0])
        runs = {seed: P.arm_run(self.s, arm, budget, record["chosen"], seed,
                                "holdout" if seed == every[0] else "test", teachers[seed])
                for seed in seeds}
        finals = self._finals(runs, seeds, every[0], failed=record["chosen_score"] is None)
        curve_run = (self._curve_run(arm, budget, record, seeds[0], teachers[seeds[0]])
                     if searching and arm.curve and record["chosen_score"] is not None
                     else None)
        result = {"arm": arm.name, "budget": budget.name, "network": self.s.nets[arm.net].label,
                  "batch": runs[seeds[0]].batch, "search": record, "finals": finals,
                  "runs": {str(seed): run.name for seed, run in runs.items()},
                  "teachers": {str(k): v for k, v in teachers.items()} if arm.teacher else None,
                  "curve_run": curve_run and curve_run.name,
                  "curve": curve_run and self._curve(curve_run, teachers[seeds[0]])}
        self._arms[arm.name, budget.name, seeds] = result
        if self.owner == arm.name:
            self.records["arms"].setdefault(arm.name, {})[budget.name] = result
        return result

    def recorded_search(self, arm: P.Arm, budget: P.Budget, search_seed: int) -> dict:
        """The search of `arm` at `budget` as the part that ran it recorded it in its part
        file here, after checking that the encoders this part built are the ones that search
        started from (a projection without that file runs the same rule on its own scores)."""
        owner = P.search_part(arm.name, budget.name, search_seed)
        path = results_path(self.results_dir, owner)
        part = harness.read_json(path) or {}
        found = part.get("arms", {}).get(arm.name, {}).get(budget.name)
        if self.projection:
            return (dict(found["search"]) if found and part.get("scale") == self.scale_name
                    else search.search(self.s.rule, self.projection))
        again = (f"python -m bench.semisup --part={owner} --scale={self.scale_name} "
                 f"--out={self.out}")
        if part.get("scale") != self.scale_name or not found:
            raise SystemExit(
                f"part {self.part} trains {arm.name} at {budget.name} with the configuration "
                f"that part {owner} chose, and {path} has no such search at --scale="
                f"{self.scale_name}: run `{again}` first.")
        for name, pre in self.records["pretrains"].items():
            theirs = part.get("pretrains", {}).get(name)
            if theirs and theirs["knn_curve"] != pre["knn_curve"]:
                raise SystemExit(
                    f"the encoder {name} built here is not the one part {owner} searched "
                    f"from (kNN monitor {pre['knn_curve']} here, {theirs['knn_curve']} in "
                    f"{path}): run `{again}` on this machine, then this part again.")
        return dict(found["search"], recorded_by=f"part {owner}, commit {part.get('commit')}")

    def _finals(self, runs: Dict[int, P.Run], seeds, search_seed: int,
                failed: bool) -> Dict[str, float]:
        """Test top-1 per seed: the search's chosen run (seed `search_seed`) read on test
        once, the other seeds trained with its settings and evaluated on test (None: the loss
        diverged)."""
        if failed:  # every trial diverged: nothing to test
            return {str(seed): None for seed in seeds}
        return {str(seed): self._score(self._execute(
            runs[seed], "test" if seed == search_seed else "train")) for seed in seeds}

    def teacher_run(self, arm: P.Arm, budget: P.Budget, seed: int) -> Optional[str]:
        """The run directory name of the teacher of `arm`'s run with subset seed `seed`."""
        if not arm.teacher:
            return None
        owner, self.owner = self.owner, None  # the teacher's runs are a dependency here
        try:
            return self.arm(P.ARMS[arm.teacher], budget)["runs"][str(seed)]
        finally:
            self.owner = owner

    def _curve_run(self, arm, budget, record, seed, teacher) -> P.Run:
        """The longest run at the chosen learning rate and weight decay; run at the arm's
        curve_length first if the search stopped shorter."""
        chosen = record["chosen"]
        same = [t["point"]["length"] for t in record["trials"]
                if all(t["point"][k] == v for k, v in chosen.items() if k != "length")]
        point = dict(chosen, length=max(same + [arm.curve_length]))
        run = P.arm_run(self.s, arm, budget, point, seed, "holdout", teacher)
        if point["length"] not in same:
            self._execute(run, "train")
        return run

    def _curve(self, run: P.Run, teacher: Optional[str]):
        """The run's holdout top-1 (and teacher agreement) at each kept checkpoint."""
        if self.projection:
            seconds = round(runner.OVERHEAD_SECONDS["eval"] + P.CURVE_POINTS *
                            runner.OVERHEAD_SECONDS["curve_point"])
            self.records["runs"][run.name + ":curve"] = {
                "projected_seconds": seconds, "wall_seconds": seconds,
                "owner": self.owner or "dependency"}
            return []
        model_dir = os.path.join(self.runs_dir, run.name)
        path = os.path.join(model_dir, "bench_curve.json")
        if not os.path.exists(path):
            argv = [sys.executable, "-m", "bench.semisup_study.curves", model_dir, path]
            argv += [os.path.join(self.runs_dir, teacher)] if teacher else []
            tic = time.perf_counter()
            done = subprocess.run(argv, cwd=harness.ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the holdout curve of {run.name} failed:\n  "
                                 f"{' '.join(argv)}\n{done.stderr[-2000:]}")
            seconds = round(time.perf_counter() - tic, 1)
            self.records["runs"][run.name + ":curve"] = {
                "command": runner.shown(argv, self.out),
                "wall_seconds": seconds, "owner": self.owner or "dependency"}
            print(f"  {run.name}:curve: {seconds:.0f} s", flush=True)
        return harness.read_json(path)

    # --- a part ----------------------------------------------------------------------------
    def run_part(self, part: str):
        self.part = part
        if "pixels" in P.PARTS[part]:
            self.pixel_references()
        for name, only, seeds in P.part_arms(part):
            arm = P.ARMS[name]
            for budget in self.s.arm_budgets(arm, only):
                self.owner = arm.name
                self.arm(arm, budget, seeds)
                self.owner = None
                if not self.projection:
                    self.write(part)

    def pixel_references(self):
        """Logistic regression and kNN on raw pixels at each labelled subset (all 55,000
        labels left out: the references are for the few-label budgets)."""
        budgets = [P.BUDGET[b] for b in self.s.budgets if b != "100pct"]
        if self.projection:
            self.records["runs"]["pixels"] = {"projected_seconds": PIXEL_SECONDS,
                                              "wall_seconds": PIXEL_SECONDS, "owner": "pixels"}
            return
        tic = time.perf_counter()
        self.records["pixels"] = pixels.study(budgets, self.s.seeds, self.s.logreg_iterations)
        self.records["runs"]["pixels"] = {"wall_seconds": round(time.perf_counter() - tic, 1),
                                          "owner": "pixels", "command": "in-process (NumPy)"}

    # --- the part's results file -----------------------------------------------------------
    def minutes(self, owner_only=False, key="wall_seconds") -> float:
        return sum((r.get(key) or 0) for r in self.records["runs"].values()
                   if not owner_only or r.get("owner") != "dependency") / 60

    def write(self, part: str) -> str:
        """Writes the part's results file (atomically) and returns its path."""
        path = results_path(self.results_dir, part)
        info = {"part": part, "scale": self.scale_name, "commit": harness.commit(),
                "cpu": self.cpu, "precision": self.precision,
                "rule": self.s.rule.describe(), "scale_settings": repr(self.s),
                "speeds": {"source": self.speeds.source, "measured": self.speeds.measured},
                "minutes_of_runs": round(self.minutes(), 2),
                "minutes_of_own_runs": round(self.minutes(owner_only=True), 2),
                "wall_minutes_this_invocation": round(
                    (time.perf_counter() - self.started) / 60, 2),
                "paths": "commands are run from the repository root; $OUT is --out", **self.records}
        harness.write_json(path, info)
        return path


def results_path(directory: str, part: str) -> str:
    return os.path.join(directory, f"part_{part}.json")


def measured_speeds(directory: str, cpu: dict) -> Dict[str, float]:
    """images/s per speed key that the part files in `directory` measured on a CPU of this
    model (the last part's value wins); {} when there are none."""
    out = {}
    for path in sorted(glob.glob(results_path(directory, "*"))):
        part = harness.read_json(path)
        if part.get("cpu", {}).get("model") == cpu["model"] and part.get("scale") == "full":
            out.update(part.get("speeds", {}).get("measured", {}))
    return out
