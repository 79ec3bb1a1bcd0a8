"""Prompt templates for DGR refinement: defaults per mode, the template check, rendering, hashing and a preview.

A template is plain text with `{placeholder}` fields (`{{` and `}}` are literal braces). Three modes:

- `joint`    one generation: the model restates the reasoning and the answer, reasoning in `<think>...</think>`.
             Needs `{prompt}`, `{reasoning}` and `{answer}`.
- `separate` two generations: first the reasoning only, then the answer only. The template has two parts split
             by the line `=== ANSWER STEP ===`; part 1 needs `{prompt}` and `{reasoning}`, part 2 needs `{answer}`
             and may use `{rewritten_reasoning}` (the model's output of part 1) so both steps agree.
- `self`     the model answers the prompt from scratch: the reference for "the model's own distribution".
             Needs `{prompt}` and may not show the original response.

Thinking models (a chat template that opens or pre-fills a think block, found by `dgr_core.render`) get the
*delimited* defaults (`THINKING_TEMPLATES`): the model may think about the rewriting task as it likes, then writes
the rewrite between explicit delimiters (`REWRITE_TAGS`: `<rewritten_reasoning>...</rewritten_reasoning>`,
`<rewritten_answer>...</rewritten_answer>`). The parser (`dgr_core.refine.engine`) takes the rewrite from the
delimiters and keeps the thinking as provenance only. `resolve_template` picks them when the template is left at
the plain default; `delimited_fields` says which blocks each part of a template asks for.

    check_template(template, "joint")                  # raises SpecError saying what to fix
    render_template(template, {"prompt": ..., ...})    # -> the user message sent through the chat template
    template_hash(template)                            # 16 hex chars, recorded on every refined row
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dgr_core.errors import SpecError

MODES = ("joint", "separate", "self")
SEPARATOR = "=== ANSWER STEP ==="
ROW_FIELDS = ("prompt", "reasoning", "answer", "category")
STEP1_OUTPUT = "rewritten_reasoning"

JOINT_TEMPLATE = """\
Below is a question and a response written by another assistant: its reasoning and its final answer.
Rewrite both in your own words, the way you would naturally think and answer.

Rules:
- Keep the same decision: if the response refuses, your answer must refuse too; if it helps, help the same way.
- Do not add any harmful, dangerous or operational detail that the original does not contain.
- Put your reasoning inside <think> and </think>, then write your final answer after </think>.

Question:
{prompt}

Original reasoning:
{reasoning}

Original answer:
{answer}"""

SEPARATE_TEMPLATE = f"""\
Below is a question and the reasoning another assistant wrote before answering it.
Restate that reasoning in your own words, the way you would think it through yourself.
Keep its conclusion (if it decides to refuse, you decide to refuse) and add no harmful detail.
Write only the reasoning, not the final answer.

Question:
{{prompt}}

Original reasoning:
{{reasoning}}
{SEPARATOR}
Below is a question, your reasoning about it, and the final answer another assistant gave.
Write that final answer in your own words. Keep the same decision (refuse if it refuses) and add no
harmful detail. Write only the answer.

Question:
{{prompt}}

Your reasoning:
{{{STEP1_OUTPUT}}}

Original answer:
{{answer}}"""

SELF_TEMPLATE = "{prompt}"

DEFAULT_TEMPLATES = {"joint": JOINT_TEMPLATE, "separate": SEPARATE_TEMPLATE, "self": SELF_TEMPLATE}

# The output contract of the delimited templates: field -> (open, close) delimiter.
REWRITE_TAGS = {"reasoning": ("<rewritten_reasoning>", "</rewritten_reasoning>"),
                "answer": ("<rewritten_answer>", "</rewritten_answer>")}

JOINT_THINKING_TEMPLATE = """\
Below is a question and a response written by another assistant: its reasoning and its final answer.
Rewrite both in your own words, the way you would naturally think and answer.

Rules:
- Keep the same decision: if the response refuses, your answer must refuse too; if it helps, help the same way.
- Do not add any harmful, dangerous or operational detail that the original does not contain.
- Think about this task first if you like. Then write the rewritten reasoning between <rewritten_reasoning> and
  </rewritten_reasoning>, and the rewritten final answer between <rewritten_answer> and </rewritten_answer>.
  Write each block exactly once, after your thinking, with no think tags inside them.

Question:
{prompt}

Original reasoning:
{reasoning}

Original answer:
{answer}"""

SEPARATE_THINKING_TEMPLATE = f"""\
Below is a question and the reasoning another assistant wrote before answering it.
Restate that reasoning in your own words, the way you would think it through yourself.
Keep its conclusion (if it decides to refuse, you decide to refuse) and add no harmful detail.
Think about this task first if you like. Then write the restated reasoning (not the final answer) between
<rewritten_reasoning> and </rewritten_reasoning>, exactly once, with no think tags inside.

Question:
{{prompt}}

Original reasoning:
{{reasoning}}
{SEPARATOR}
Below is a question, your reasoning about it, and the final answer another assistant gave.
Write that final answer in your own words. Keep the same decision (refuse if it refuses) and add no
harmful detail. Think about this task first if you like. Then write only the answer between
<rewritten_answer> and </rewritten_answer>, exactly once, with no think tags inside.

Question:
{{prompt}}

Your reasoning:
{{{STEP1_OUTPUT}}}

Original answer:
{{answer}}"""

THINKING_TEMPLATES = {"joint": JOINT_THINKING_TEMPLATE, "separate": SEPARATE_THINKING_TEMPLATE,
                      "self": SELF_TEMPLATE}


@dataclass(frozen=True)
class PartRule:
    """Which placeholders one template part must have and which it may have."""

    title: str
    required: tuple[str, ...]
    allowed: tuple[str, ...]


RULES: dict[str, tuple[PartRule, ...]] = {
    "joint": (PartRule("rewrite", ("prompt", "reasoning", "answer"), ROW_FIELDS),),
    "separate": (PartRule("reasoning step", ("prompt", "reasoning"), ROW_FIELDS),
                 PartRule("answer step", ("answer",), (*ROW_FIELDS, STEP1_OUTPUT))),
    "self": (PartRule("answer from scratch", ("prompt",), ("prompt", "category")),),
}


def default_template(mode: str, thinking: bool = False) -> str:
    """The default template of a mode: the delimited one for thinking models."""
    check_mode(mode)
    return (THINKING_TEMPLATES if thinking else DEFAULT_TEMPLATES)[mode]


def resolve_template(mode: str, template: str, thinking: bool) -> str:
    """The template a run uses: `template`, except that an empty one or the plain default becomes the mode's
    default for this model (the delimited one when `thinking`, i.e. its chat template knows think blocks)."""
    plain = not template.strip() or normalize(template).strip() == DEFAULT_TEMPLATES[mode].strip()
    return default_template(mode, thinking) if plain else template


def delimited_fields(template: str) -> list[tuple[str, ...]]:
    """Per template part, the rewrite fields it asks for between delimiters (empty: the plain contract)."""
    return [tuple(f for f, (open_tag, _) in REWRITE_TAGS.items() if open_tag in part) for part in split_parts(template)]


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise SpecError(f"refine: mode must be one of {', '.join(MODES)}, not {mode!r}.")


def needs_reasoning(mode: str) -> bool:
    """Whether a mode restates the original reasoning (so a dataset without any reasoning cannot feed it)."""
    return mode in ("joint", "separate")


def split_parts(template: str) -> list[str]:
    """The template's parts: one, or two for `separate` (split at the SEPARATOR line)."""
    return [p.strip("\n") for p in normalize(template).split(SEPARATOR)]


def normalize(template: str) -> str:
    # A template pasted from a Windows editor must render and hash like the same text typed here.
    return template.replace("\r\n", "\n").replace("\r", "\n")


def placeholders(part: str) -> list[str]:
    """Placeholder names in a template part, in order; SpecError for broken braces or field syntax."""
    names = []
    try:
        parsed = list(string.Formatter().parse(part))
    except ValueError as exc:
        raise SpecError(f"refine template: {exc}. Write {{{{ and }}}} for a literal brace.") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise SpecError(f"refine template: '{{{name}{'!' + conversion if conversion else ''}"
                            f"{':' + spec if spec else ''}}}' is not a plain placeholder; use names like "
                            f"{{prompt}}, or {{{{ and }}}} for literal braces.")
        names.append(name)
    return names


def check_template(template: str, mode: str) -> None:
    """Raise SpecError naming the first problem: wrong number of parts, a missing required placeholder, an
    unknown one, or one the mode may not use."""
    check_mode(mode)
    if not template or not template.strip():
        raise SpecError(f"refine template is empty; use the default {mode} template or write one.")
    parts, rules = split_parts(template), RULES[mode]
    if len(parts) != len(rules):
        if mode == "separate":
            raise SpecError(f"refine template: separate mode needs two parts (reasoning step, then answer step) "
                            f"split by a line '{SEPARATOR}'; found {len(parts)} part(s).")
        raise SpecError(f"refine template: only separate mode has two steps; remove the '{SEPARATOR}' line "
                        f"for {mode} mode.")
    for part, rule in zip(parts, rules, strict=True):
        _check_part(part, rule, mode)


def _check_part(part: str, rule: PartRule, mode: str) -> None:
    names = placeholders(part)
    where = f"refine template ({mode} mode, {rule.title})"
    for name in names:
        if name in rule.allowed:
            continue
        if name in ROW_FIELDS or name == STEP1_OUTPUT:
            why = ("self mode answers from scratch and must not see the original response"
                   if mode == "self" else "it is only available in the answer step")
            raise SpecError(f"{where}: {{{name}}} cannot be used here ({why}); remove it.")
        raise SpecError(f"{where}: unknown placeholder {{{name}}}; allowed: "
                        f"{', '.join('{' + a + '}' for a in rule.allowed)}. Write {{{{ and }}}} for literal braces.")
    missing = [name for name in rule.required if name not in names]
    if missing:
        raise SpecError(f"{where}: missing required placeholder(s) {', '.join('{' + m + '}' for m in missing)}.")


def render_template(template: str, row: Mapping[str, Any]) -> str:
    """Fill one template part with a row's fields (missing or None fields render as empty text)."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(normalize(template)):
        out.append(literal)
        if name is not None:
            value = row.get(name)
            out.append("" if value is None or (isinstance(value, float) and value != value) else str(value))
    return "".join(out)


def template_hash(template: str) -> str:
    """sha256 of the normalized template text (16 hex chars): which template wrote a refined row."""
    return hashlib.sha256(normalize(template).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class PreviewPart:
    title: str
    messages: list[dict[str, str]]  # the chat conversation sent to the model
    text: str  # the conversation as the model sees it (chat template) or the plain user message


STEP1_PLACEHOLDER = "[the model's rewritten reasoning from the reasoning step]"


def preview(template: str, mode: str, row: Mapping[str, Any], tokenizer: Any = None) -> list[PreviewPart]:
    """What the model is sent for one row, per step; rendered through `tokenizer`'s chat template when given.

    A thinking model (its chat template opens or pre-fills think blocks) left at the plain default template is
    shown the delimited one, as a run would send it. Raises SpecError for a template that fails the check, so a
    page can show the message instead."""
    from dgr_core.render import generation_prompt, template_facts

    check_template(template, mode)
    chat = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    thinking = chat and template_facts(tokenizer).thinks
    sent = resolve_template(mode, template, thinking)
    out = []
    for part, rule in zip(split_parts(sent), RULES[mode], strict=True):
        fields = {**row, STEP1_OUTPUT: STEP1_PLACEHOLDER}
        messages = [{"role": "user", "content": render_template(part, fields)}]
        text = generation_prompt(tokenizer, messages) if chat else messages[0]["content"]
        title = rule.title + (" · delimited output (thinking model)" if sent != template else "")
        out.append(PreviewPart(title, messages, text))
    return out
