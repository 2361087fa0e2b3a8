"""TRL's ``SFTTrainer`` trains the exported chat JSONL on the tokens earlyexp trains.

The files are written by the code the methods run: ``expert_sft.jsonl`` by IL's path
(:func:`~earlyexp.agents.data.collect_expert`, ``expert_records``, ``write_chat_jsonl``),
``iwm_sft.jsonl`` and ``reflection_sft.jsonl`` by :func:`earlyexp.agents.early_experience.export`
(uniform alternatives, the grounded reflector), at ``window=2`` so examples carry history.
Loaded with ``datasets`` and trained with ``assistant_only_loss=True``, every token TRL labels
is one :class:`~earlyexp.agents.chat.ChatEncoder` masks with ``train_on="all"`` (every
assistant message: the content and its ``<|end|>``), with the same ids. earlyexp's own SFT
trains the *last* assistant message (``train_on="last"``); the two agree where an example has
one assistant message (IWM; any file exported at ``window=0``), and TRL's prompt-completion
form (prompt = all but the last message) gives the ``last`` mask exactly.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

from earlyexp.agents.chat import ChatEncoder  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),  # about 10 s on 2 cores
    # transformers 5.x renamed an argument SFTConfig still sets (TRL's, not ours)
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
]

FL = "EarlyExp/FrozenLake-v0"
WINDOW = 2
FILES = ("il/expert_sft.jsonl", "ee/iwm_sft.jsonl", "ee/reflection_sft.jsonl")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A folder with IL's expert_sft.jsonl and the Early Experience export of a few episodes."""
    from earlyexp.agents.data import EXPERT_FILE, collect_expert, expert_records, write_chat_jsonl
    from earlyexp.agents.early_experience import ExportConfig, export
    from earlyexp.agents.prompting import PromptConfig

    root = tmp_path_factory.mktemp("exported")
    prompt = PromptConfig(window=WINDOW, action_help=False)  # IL's prompt on the tiny model
    demos = collect_expert(FL, 3, seed=0, prompt=prompt, num_envs=3)
    write_chat_jsonl(expert_records(demos, WINDOW), root / "il" / EXPERT_FILE)
    export(ExportConfig(env=FL, episodes=3, K=2, model="none", window=WINDOW,
                        out=str(root / "ee")))  # fmt: skip
    return root


def load(path, tmp_path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


def trainer(tiny_path, dataset, tmp_path, **config):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=3, use_cpu=True, report_to=[],
        per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", disable_tqdm=True, seed=0, **config,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def trained(labels: list[int]) -> list[int]:
    return [int(x != -100) for x in labels]


@pytest.mark.parametrize("name", FILES)
def test_assistant_only_loss_labels_the_chat_encoder_tokens_and_trains(
    tiny_path, exported, tmp_path, name
):
    import torch

    data = load(exported / name, tmp_path)
    assert len(data) >= 4 and "messages" in data.column_names
    t = trainer(tiny_path, data, tmp_path, assistant_only_loss=True)
    encoder = ChatEncoder(t.processing_class)
    processed = t.train_dataset
    assert len(processed) == len(data)  # nothing truncated or dropped
    differs = 0
    for raw, row in zip(data, processed, strict=True):
        ids, mask = encoder.encode(raw["messages"], train_on="all")
        _, last = encoder.encode(raw["messages"], train_on="last")
        assert row["input_ids"] == ids
        assert trained(row["labels"]) == mask
        assert all(lab == i for lab, i, m in zip(row["labels"], ids, mask, strict=True) if m)
        assistants = sum(m["role"] == "assistant" for m in raw["messages"])
        assert (mask == last) == (assistants == 1)
        differs += mask != last
    assert differs > 0 if name != "ee/iwm_sft.jsonl" else differs == 0

    batch = t.data_collator([processed[i] for i in range(2)])  # (2, T), right-padded with -100
    width = batch["labels"].shape[1]
    for b in range(2):
        _, mask = encoder.encode(data[b]["messages"], train_on="all")
        assert trained(batch["labels"][b].tolist()) == mask + [0] * (width - len(mask))

    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.train()
    losses = [h["loss"] for h in t.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    unchanged = [n for n, p in t.model.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unchanged, unchanged


def test_prompt_completion_form_trains_the_last_message_as_earlyexp_does(
    tiny_path, exported, tmp_path
):
    data = load(exported / "il" / "expert_sft.jsonl", tmp_path)
    pairs = data.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                     remove_columns=["messages"])  # fmt: skip
    t = trainer(tiny_path, pairs, tmp_path)  # completion_only_loss: on by default for this form
    encoder = ChatEncoder(t.processing_class)
    for raw, row in zip(data, t.train_dataset, strict=True):
        ids, last = encoder.encode(raw["messages"], train_on="last")
        assert row["input_ids"] == ids
        assert trained(row["labels"]) == last
