"""Who explores a 10-armed Bernoulli bandit best? Cumulative regret, both faces (not a test).

Classic face (``llm_gym/Bandit-v0``, horizon 500): random, ε-greedy (fixed 0.1 and decaying),
UCB1 and Thompson sampling, each run through ``llm_gym.agents.compare`` for one episode of the
horizon per seed (seed ``s`` is the same bandit instance for every agent). Text face
(``llm_gym/BanditText-v0``, arm-name mask on): SmolLM2-135M-Instruct prompted, no training,
greedy or sampled under the mask, on the same seeds (the same bandit instances) as the classic
runs. The LM runs on fewer seeds and a shorter horizon than the baselines: a 135M model on 2
shared CPU cores costs 1-2 s a pull under load, and a 500-pull conversation (about 9,100
tokens) would not fit its 8,192-token context.

    nice -n 10 python benchmarks/learn_bandit.py --only baselines --seeds 0-19
    nice -n 10 python benchmarks/learn_bandit.py --only lm --lm-seeds 0-9 --lm-horizon 100
    nice -n 10 python benchmarks/learn_bandit.py --only lm --lm-seeds 0-9 --lm-temperature 1
    python benchmarks/learn_bandit.py --only table --lm-seeds 0-9   # table.md, regret PNG

``--only trained`` first trains SmolLM2 across bandit instances for ``--train-updates`` updates
at ``--train-horizon`` pulls, then evaluates that model as the prompted one is.
``--train-agent grpo`` (the default): each GRPO group plays one instance (BanditText-v0 pins
instance ``10**9 + i`` for ``options={"index": i}``, far from the evaluation seeds 0-999), so the
group baseline compares pulls on the same arms. ``--train-agent reinforce-pp``: the last round's
run, each row a fresh instance (reset seeds above 10**6) with a batch-normalised advantage:

    nice -n 10 python benchmarks/learn_bandit.py --only trained --lm-seeds 0-9 --train-updates 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

CLASSIC, TEXT = "llm_gym/Bandit-v0", "llm_gym/BanditText-v0"
BASELINES = ("random", "epsilon-greedy", "epsilon-greedy-decay", "ucb1", "thompson")
REPORT_AT = (50, 100, 200, 400, 500)  # pulls at which the table reads the regret curves


def seeds_from(text: str) -> list[int]:
    """``"0-4"`` or ``"0,1,2"`` -> the list of seeds."""
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def run_baselines(seeds: list[int], horizon: int, out: Path) -> dict[str, dict[int, list[float]]]:
    """Per-pull regrets of every baseline, one list per seed, via ``llm-gym compare``'s code."""
    from llm_gym.agents.compare import plan_runs, run_comparison

    runs, _ = plan_runs([CLASSIC], list(BASELINES), horizon, seeds,
                        {CLASSIC: {"horizon": horizon}})
    report = run_comparison(runs, out_dir=out / "compare", eval_episodes=1)
    curves: dict[str, dict[int, list[float]]] = {}
    for result in report.runs:
        curves.setdefault(result.spec.name, {})[result.spec.seed] = list(result.regret)
    return curves


def run_lm(seed: int, horizon: int, model: Any, tokenizer: Any,
           temperature: float = 0.0) -> dict[str, Any]:
    """One prompted episode of the LM on the masked text face, KV-cached (O(1) a token).

    ``temperature`` 0 is greedy; otherwise tokens are sampled from the masked softmax with a
    generator seeded by ``seed``.
    """
    import torch
    from transformers import DynamicCache

    from llm_gym.agents.policy import cache_argument

    env = gym.make(TEXT, horizon=horizon, tokenizer=tokenizer, constrained=True)
    obs, _ = env.reset(seed=seed)
    cache, fed, regrets, arms, forwards = DynamicCache(), 0, [], [], 0
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    while True:
        allowed = np.flatnonzero(obs["action_mask"])
        if len(allowed) == 1:  # after an arm name only the end of turn is allowed: no forward
            token = int(allowed[0])
        else:
            length = int(obs["attention_mask"].sum())
            ids = torch.from_numpy(obs["input_ids"][fed:length])[None]
            with torch.no_grad():
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1,
                            **{cache_argument(model): cache})
            cache, fed, forwards = getattr(out, cache_argument(model)), length, forwards + 1
            scores = out.logits[0, -1, torch.from_numpy(allowed)].float()
            if temperature > 0:
                probs = torch.softmax(scores / temperature, dim=-1)
                pick = int(torch.multinomial(probs, 1, generator=generator))
            else:
                pick = int(torch.argmax(scores))
            token = int(allowed[pick])
        obs, _, terminated, truncated, info = env.step(token)
        if "regret" in info:
            regrets.append(float(info["regret"]))
            arms.append(int(info["classic_action"]))
        if terminated or truncated:
            break
    means = env.unwrapped.classic_env.arm_means
    return {"seed": seed, "horizon": horizon, "temperature": temperature,
            "regrets": regrets, "arms": arms,
            "arm_means": means.tolist(), "terminated": bool(terminated),
            "tokens": int(obs["attention_mask"].sum()), "forwards": forwards,
            "seconds": time.perf_counter() - start}


def lm_tag(temperature: float, horizon: int, trained: bool = False) -> str:
    """File-name tag of an LM setting: ``greedy_h100``, ``t1.0_h100``, ``trained_greedy_h100``."""
    mode = "greedy" if temperature == 0 else f"t{temperature}"
    return f"{'trained_' if trained else ''}{mode}_h{horizon}"


def train_lm(updates: int, horizon: int, seed: int, agent_name: str = "grpo"
             ) -> tuple[Any, Any, dict[str, Any]]:
    """SmolLM2 after ``updates`` updates of ``agent_name`` across bandit instances, and the facts.

    GRPO: a group's rows play one instance (``10**9 + index``); REINFORCE++: the agent's seed (1
    by default) puts every row's reset seed above 10**6. Both stay away from the evaluation seeds.
    """
    from llm_gym.agents.factory import make_agent

    config = {"group_size": 4, "prompts_per_batch": 2, "learning_rate": 1e-5,
              "temperature": 1.0, "micro_batch_size": 4}
    agent = make_agent(agent_name, TEXT, model="smollm2", seed=seed, config=config,
                       env_kwargs={"constrained": True, "horizon": horizon})
    start = time.perf_counter()
    rewards: list[float] = []

    def callback(metrics: dict) -> bool:
        rewards.append(float(metrics.get("rollout/ep_rew_mean", float("nan"))))
        print(f"update {agent.num_updates}: mean return {rewards[-1]:.2f}", flush=True)
        return agent.num_updates < updates

    agent.learn(10**9, callback=callback)
    facts = {"updates": agent.num_updates, "env_steps": agent.num_timesteps,
             "train_seconds": time.perf_counter() - start, "train_horizon": horizon,
             "train_seed": seed, "mean_return_per_update": rewards, "config": config,
             "agent": agent_name}
    return agent.model, agent.tokenizer, facts


def run_lm_seeds(seeds: list[int], horizon: int, out: Path, temperature: float = 0.0,
                 trained: dict[str, Any] | None = None) -> None:
    """Run the LM on each seed, writing ``lm_<tag>_seed<s>.json`` as each one ends.

    ``trained`` (``{"updates", "horizon", "seed"}``) first trains it (:func:`train_lm`).
    """
    import torch

    from llm_gym.models import load_model

    torch.set_num_threads(1)  # 2 shared cores: a second thread only contends
    facts = None
    if trained:
        torch.set_num_threads(2)  # training has the machine to itself
        model, tokenizer, facts = train_lm(trained["updates"], trained["horizon"],
                                           trained["seed"], trained.get("agent", "grpo"))
        model.eval()
        torch.set_num_threads(1)
    else:
        model, tokenizer = load_model("smollm2", device="cpu")
    for seed in seeds:
        with torch.no_grad():
            result = run_lm(seed, horizon, model, tokenizer, temperature)
        result["training"] = facts
        tag = lm_tag(temperature, horizon, bool(trained))
        if trained and trained.get("agent", "grpo") == "grpo":  # beside the REINFORCE++ files
            tag = tag.replace("trained_", "trained_grpo_")
        (out / f"lm_{tag}_seed{seed}.json").write_text(
            json.dumps(result))
        print(f"LM seed {seed}: regret {sum(result['regrets']):.1f} over "
              f"{len(result['regrets'])} pulls, {result['seconds']:.0f} s", flush=True)


def load_curves(out: Path) -> dict[str, dict[int, list[float]]]:
    """Per-pull regrets by agent and seed: the baselines' file and every finished LM seed."""
    curves: dict[str, dict[int, list[float]]] = {}
    baselines = out / "baselines.json"
    if baselines.is_file():
        for name, by_seed in json.loads(baselines.read_text()).items():
            curves[name] = {int(seed): regrets for seed, regrets in by_seed.items()}
    for path in sorted(out.glob("lm_*_seed*.json")):
        result = json.loads(path.read_text())
        mode = "greedy" if result["temperature"] == 0 else f"sampled T={result['temperature']}"
        how = "prompted"
        if result.get("training"):
            trainer = {"grpo": "GRPO"}.get(result["training"].get("agent"), "REINFORCE++")
            how = f"after {result['training']['updates']} {trainer} updates"
        name = f"SmolLM2 {how}, {mode}, horizon {result['horizon']}"
        curves.setdefault(name, {})[result["seed"]] = result["regrets"]
    return curves


def table(curves: dict[str, dict[int, list[float]]], lm_seeds: list[int]) -> str:
    """Cumulative regret at each pull of :data:`REPORT_AT`: mean ± std over seeds.

    Every agent gets a row over all its seeds and, where the LM ran on fewer, a row over the
    LM's seeds only (the same bandit instances), so the LM is compared like for like.
    """
    head = " | ".join(f"regret @ {t}" for t in REPORT_AT)
    lines = [f"| agent | seeds | {head} |", "|---|---|" + "---:|" * len(REPORT_AT)]
    for name, by_seed in curves.items():
        subsets = [sorted(by_seed)]
        lm = [s for s in lm_seeds if s in by_seed]
        if not name.startswith("SmolLM2") and lm and lm != subsets[0]:
            subsets.append(lm)
        for seeds in subsets:
            cells = []
            for t in REPORT_AT:
                at = [float(np.sum(by_seed[s][:t])) for s in seeds if len(by_seed[s]) >= t]
                cells.append(f"{np.mean(at):.1f} ± {np.std(at):.1f}" if len(at) == len(seeds)
                             else "–")
            label = f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
                else ",".join(map(str, seeds))
            lines.append(f"| {name} | {label} ({len(seeds)}) | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[int, list[float]]], path: Path) -> None:
    """Cumulative regret vs pulls, mean ± 1 std over each agent's seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_seed in curves.items():
        length = min(len(r) for r in by_seed.values())
        cumulative = np.stack([np.cumsum(r[:length]) for r in by_seed.values()])
        mean, std = cumulative.mean(axis=0), cumulative.std(axis=0)
        pulls = np.arange(1, length + 1)
        (line,) = ax.plot(pulls, mean, label=f"{name} ({len(by_seed)} seeds)")
        ax.fill_between(pulls, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("pulls")
    ax.set_ylabel("cumulative regret (mean ± 1 std)")
    ax.set_title("10-armed Bernoulli bandit")
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-19", help="baseline seeds, '0-19' or '0,1'")
    parser.add_argument("--horizon", type=int, default=500)
    parser.add_argument("--lm-seeds", default="0-4")
    parser.add_argument("--lm-horizon", type=int, default=100)
    parser.add_argument("--lm-temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--train-updates", type=int, default=20)
    parser.add_argument("--train-horizon", type=int, default=20)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--train-agent", choices=("grpo", "reinforce-pp"), default="grpo")
    parser.add_argument("--only", choices=("baselines", "lm", "trained", "table"),
                        help="run one part (the table reads what is in --out)")
    parser.add_argument("--out", default="benchmarks/results/learn_bandit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "lm"):
        run_lm_seeds(seeds_from(args.lm_seeds), args.lm_horizon, out, args.lm_temperature)
    if args.only == "trained":
        run_lm_seeds(seeds_from(args.lm_seeds), args.lm_horizon, out, args.lm_temperature,
                     trained={"updates": args.train_updates, "horizon": args.train_horizon,
                              "seed": args.train_seed, "agent": args.train_agent})
    if args.only in (None, "baselines"):
        curves = run_baselines(seeds_from(args.seeds), args.horizon, out)
        (out / "baselines.json").write_text(json.dumps(curves))
    curves = load_curves(out)
    (out / "table.md").write_text(table(curves, seeds_from(args.lm_seeds)) + "\n")
    plot(curves, out / "regret_curves.png")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
