"""The unshaped env return beside the shaped one, in every agent's episode log and the plot.

Issue 21: a ``compare --variants`` PNG plotted only the shaped training return, so variants that
differed only in their shaping looked like different learners.
"""

from __future__ import annotations

import pytest

from llm_gym.agents.compare import RunSpec, plan_runs, run_comparison
from llm_gym.agents.compare_plot import learning_curve_figure
from llm_gym.agents.factory import make_agent

PENALTY = [{"name": "LengthPenalty", "kwargs": {"coef": 0.5}}]


@pytest.mark.parametrize(("agent", "env_id", "kwargs"), [
    ("q-learning", "llm_gym/LeftRight-v0", {}),
    ("sb3-a2c", "llm_gym/LeftRight-v0", {}),
    ("grpo", "llm_gym/Arithmetic-v0", {"config": {"group_size": 2, "prompts_per_batch": 2},
                                       "env_kwargs": {"max_new_tokens": 4}}),
    ("ppo", "llm_gym/Arithmetic-v0", {"config": {"num_envs": 2, "num_steps": 8},
                                      "env_kwargs": {"max_new_tokens": 4}}),
])
def test_shaped_episodes_record_their_unshaped_env_return(agent, env_id, kwargs):
    shaped = make_agent(agent, env_id, wrappers=PENALTY, seed=0, **kwargs)
    shaped.learn(64)
    log = shaped.episode_log
    assert log and all(r.env_return is not None for r in log)
    # Every step pays -0.5: the shaped return is the env return less half the length.
    for record in log:
        assert record.episode_return == pytest.approx(record.env_return - 0.5 * record.length)
    plain = make_agent(agent, env_id, seed=0, **kwargs)
    plain.learn(16)
    assert all(r.env_return is None for r in plain.episode_log)


def test_the_learning_curves_get_an_unshaped_row_when_a_run_is_shaped():
    runs, _ = plan_runs(["llm_gym/LeftRight-v0"], ["q-learning"], 300,
                        variants={"plain": [], "penalty": PENALTY})
    fig = learning_curve_figure(run_comparison(runs, eval_episodes=1).runs)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert len(fig.axes) == 2
    assert "training-episode return" in labels[0] and "unshaped env return" in labels[1]
    shaped_row, env_row = ([line.get_ydata() for line in ax.get_lines()
                            if line.get_label() == "q-learning [penalty]"][0] for ax in fig.axes)
    assert (env_row > shaped_row).all()  # the penalty is out of the env return
    plain = run_comparison([RunSpec("llm_gym/LeftRight-v0", "q-learning", 200)],
                           eval_episodes=1).runs
    assert len(learning_curve_figure(plain).axes) == 1  # unshaped: one row, as before
