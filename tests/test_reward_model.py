"""Bradley–Terry reward models, the LearnedReward wrapper, and RLHF PPO on a learned reward."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import llm_gym  # noqa: F401
from llm_gym.cli import main
from llm_gym.reward_model import (
    RewardScorer,
    build_reward_model,
    encode_conversation,
    save_reward_model,
)
from llm_gym.reward_training import RewardModelConfig, bradley_terry_loss, train_reward_model
from llm_gym.wrappers.stack import make_env, parse_wrappers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARITH = "llm_gym/Arithmetic-v0"


def easy_pairs(count: int = 60) -> list[dict]:
    """Conversational pairs whose chosen reply is the sum and whose rejected one is a refusal."""
    rng = random.Random(0)
    rows = []
    for _ in range(count):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
                     "chosen": [{"role": "assistant", "content": str(a + b)}],
                     "rejected": [{"role": "assistant", "content": "I do not know."}]})
    return rows


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rm") / "rm"
    result = train_reward_model(easy_pairs(), "tiny", folder,
                                RewardModelConfig(epochs=2, learning_rate=1e-3))
    return folder, result


def test_bradley_terry_loss_with_margin():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = -torch.nn.functional.logsigmoid(torch.tensor([1.0, -1.0])).mean()
    assert float(bradley_terry_loss(chosen, rejected, 1.0)) == pytest.approx(float(expected))


def test_micro_batches_give_the_one_pass_gradient_and_loss():
    # Micro-batching is a memory knob only: the step's gradient and loss must not change.
    from llm_gym.reward_training import _accumulate, encode_pairs

    model, tokenizer = build_reward_model("tiny")
    pairs = encode_pairs(easy_pairs()[:5], tokenizer, 512, margin=0.5)
    pad = model.config.pad_token_id
    results = []
    for micro in (5, 2):
        model.zero_grad(set_to_none=True)
        loss = _accumulate(model, pairs, pad, micro)
        results.append((loss, [p.grad.clone() for p in model.parameters()]))
    (one_loss, one_grads), (micro_loss, micro_grads) = results
    assert micro_loss == pytest.approx(one_loss, rel=1e-5)
    for whole, parts in zip(one_grads, micro_grads, strict=True):
        torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().max()) > 0 for g in one_grads)


def test_tiny_rm_beats_chance_on_held_out_prompts(trained_rm):
    folder, result = trained_rm
    assert result.eval_pairs >= 10 and result.eval_accuracy > 0.9
    assert result.losses[-1] < result.losses[0]
    info = json.loads((folder / "reward_model.json").read_text())
    assert info["result"]["eval_accuracy"] == result.eval_accuracy


def test_saved_rm_loads_with_transformers_and_scores_the_same(trained_rm):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, _ = trained_rm
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = [{"role": "user", "content": "What is 3 + 4?"}]
    ids = torch.tensor([encode_conversation(tokenizer, prompt, [
        {"role": "assistant", "content": "7"}])])
    with torch.no_grad():
        alone = float(model(input_ids=ids).logits[0, 0])
    # Batched with a longer reply, left-padded: the same score.
    scores = RewardScorer(folder).score([prompt, prompt], ["7", "I do not know the answer."])
    assert scores[0] == pytest.approx(alone, abs=1e-4) and scores[0] > scores[1]


def test_lora_rm_saves_a_merged_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    result = train_reward_model(easy_pairs(12), "tiny", tmp_path / "rm",
                                RewardModelConfig(epochs=1, lora={"r": 4}, eval_fraction=0))
    assert result.eval_accuracy is None and result.train_pairs == 12
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_too_long_row_and_busy_folder_are_clear_errors(tmp_path, trained_rm):
    with pytest.raises(ValueError, match="preference row 0 is .* tokens long"):
        train_reward_model(easy_pairs(4), "tiny", tmp_path / "rm",
                           RewardModelConfig(max_length=8))
    with pytest.raises(FileExistsError, match="not empty"):
        train_reward_model(easy_pairs(4), "tiny", trained_rm[0])


def test_train_rm_cli(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in easy_pairs(20)) + "\n")
    assert main(["train-rm", "--data", str(data), "--out", str(tmp_path / "rm"), "--epochs",
                 "1", "--lr", "1e-3"]) == 0
    assert "held-out pairwise accuracy" in capsys.readouterr().out
    assert (tmp_path / "rm" / "config.json").is_file()


def _play(envs_or_env, replies, tokenizer):
    """Write ``replies`` (one per row) token by token; return each row's final (reward, info)."""
    seqs = [tokenizer.encode(r) + [tokenizer.eos_token_id] for r in replies]
    out = {}
    for t in range(max(map(len, seqs))):
        actions = np.array([s[t] if t < len(s) else 0 for s in seqs])
        _, rewards, terminated, truncated, infos = envs_or_env.step(actions)
        for i, seq in enumerate(seqs):
            if t == len(seq) - 1:
                out[i] = (float(rewards[i]), float(infos["rm_score"][i]),
                          float(infos["verifiable_reward"][i]))
    return out


def test_learned_reward_single_and_batched_agree(trained_rm):
    folder = str(trained_rm[0])
    stack = [{"name": "LearnedReward", "kwargs": {"reward_model": folder, "env_weight": 1.0}}]
    replies = ["12", "I do not know.", "seven"]
    envs = make_env(ARITH, 3, wrappers=stack, autoreset_mode="Disabled")
    envs.reset(seed=0, options={"index": [0, 1, 2]})
    batched = _play(envs, replies, envs.unwrapped.envs[0].tokenizer)
    for i, reply in enumerate(replies):
        env = make_env(ARITH, wrappers=stack)
        env.reset(seed=0, options={"index": i})
        tok = env.unwrapped.tokenizer
        for token in tok.encode(reply) + [tok.eos_token_id]:
            _, reward, _, _, info = env.step(token)
        assert reward == pytest.approx(batched[i][0], abs=1e-5)
        assert info["rm_score"] == pytest.approx(batched[i][1], abs=1e-5)
        assert reward == pytest.approx(info["rm_score"] + info["verifiable_reward"], abs=1e-6)
        assert info["reward_components"]["env"] == info["verifiable_reward"]


def test_reward_model_with_another_tokenizer_reads_the_reply_text(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaForSequenceClassification, PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from llm_gym.export import byte_tokenizer_as_hf

    # Byte b is id 255 - b here, so the policy's byte ids mean other text to this model.
    vocab = {char: 255 - byte for byte, char in bytes_to_unicode().items()}
    rust = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens(["<pad>", "<end>"])
    other = PreTrainedTokenizerFast(tokenizer_object=rust, pad_token="<pad>", eos_token="<end>")
    other.chat_template = byte_tokenizer_as_hf().chat_template.replace("<|im_end|>", "<end>")
    rm, _ = build_reward_model("tiny")
    config = rm.config
    config.vocab_size, config.pad_token_id = 258, other.pad_token_id
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = LlamaForSequenceClassification(config)
    folder = save_reward_model(model, other, tmp_path / "rm", {})
    env = make_env(ARITH, wrappers=[{"name": "LearnedReward", "kwargs": {
        "reward_model": str(folder)}}])
    env.reset(seed=0, options={"index": 0})
    tok = env.unwrapped.tokenizer
    for token in tok.encode("12") + [tok.eos_token_id]:
        _, reward, _, _, info = env.step(token)
    prompt = env.unwrapped.task.messages
    assert reward == pytest.approx(RewardScorer(folder).score([prompt], ["12"])[0], abs=1e-5)
    policy_ids = tok.encode(tok.apply_chat_template([*prompt, {"role": "assistant",
                                                     "content": "12"}], False))
    raw = float(model(input_ids=torch.tensor([[min(i, 257) for i in policy_ids]])).logits[0, 0])
    assert reward != pytest.approx(raw, abs=1e-3)


def test_learned_reward_rejects_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        make_env(ARITH, wrappers=[{"name": "LearnedReward", "kwargs": {
            "reward_model": str(tmp_path)}}])
    with pytest.raises(ValueError, match="LearnedReward does not take"):
        parse_wrappers('[{"name": "LearnedReward", "kwargs": {"model": "rm"}}]')
    with pytest.raises(TypeError, match="reads the agent's reply from a token observation"):
        make_env("CartPole-v1", wrappers=[{"name": "LearnedReward", "kwargs": {
            "reward_model": str(tmp_path)}}])


def test_rlhf_ppo_on_the_learned_reward_runs_end_to_end(trained_rm):
    """The RLHF recipe in miniature: PPO, per-token KL to the reference, the RM as reward."""
    from llm_gym.agents.ppo import PPOAgent, PPOConfig

    stack = [{"name": "LearnedReward", "kwargs": {"reward_model": str(trained_rm[0])}}]
    config = PPOConfig(num_envs=2, update_epochs=1, num_minibatches=1, kl_coef=0.05)
    agent = PPOAgent(ARITH, "tiny", config, env_kwargs={"max_new_tokens": 4}, wrappers=stack)
    seen = []
    agent.learn(24, callback=lambda m: seen.append(m) or True)
    assert len(seen) >= 3 and agent.wrappers.to_json() == stack
    # The first update's window is its own batch: the shaped return is the RM's share alone
    # (env_weight 0), and the env's verifiable reward is still logged beside it.
    assert seen[0]["rollout/ep_rew_mean"] == pytest.approx(seen[0]["reward/learned_reward"],
                                                           abs=1e-5)
    for metrics in seen:
        assert metrics["reward/env"] == 0.0 and "rollout/success_rate" in metrics
        assert np.isfinite(metrics["train/kl"]) and metrics["reward/learned_reward"] != 0.0
    evaluation = agent.evaluate(2)
    assert evaluation["success_rate"] is not None
