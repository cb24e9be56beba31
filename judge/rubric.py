"""The judge's rubric and prompts: the paper's four dimensions (section 4.2.2), scored 1-5, blind."""
from __future__ import annotations

DIMENSIONS = ("accuracy", "comprehensiveness", "helpfulness", "relevance")  # Table 2 row order
TITLES = {"accuracy": "Accuracy", "comprehensiveness": "Comprehensiveness", "helpfulness": "Helpfulness",
          "relevance": "Relevance"}  # the dimensions as Table 2 prints them

# Definitions as worded in section 4.2.2 of the paper (Track B: LLM-as-a-Judge).
DEFINITIONS = {
    "accuracy": "Evaluates the factual and medical correctness of the information provided, ensuring that "
                "the model's advice is scientifically valid, safe, and aligned with current medical consensus.",
    "comprehensiveness": "Refers to the depth and breadth of the clinical information provided. A highly "
                         "comprehensive output covers all essential aspects and nuances of the user's query "
                         "without overwhelming the patient with tangential information or overly dense medical "
                         "jargon.",
    "helpfulness": "Measures the extent to which the generated text practically aids the patient in achieving "
                   "their specific health-related goals or resolving their medical inquiry.",
    "relevance": "Assesses the strict alignment of the generated response with the specific symptoms, queries, "
                 "or clinical concerns posed by the user, penalizing off-topic or generic generation.",
}

SCALE = "1 = very poor, 2 = poor, 3 = acceptable, 4 = good, 5 = excellent"

POINTWISE_SYSTEM = f"""You are an impartial, experienced physician who evaluates the answer an AI assistant gave to a patient.
Score the answer on each of the four dimensions below with an integer from 1 to 5 ({SCALE}).

{chr(10).join(f"{name.capitalize()}: {text}" for name, text in DEFINITIONS.items())}

Judge only the answer shown, against the patient's question. Do not let length or style alone decide a score.
Reply with only a JSON object, no other text, of exactly this form:
{{"accuracy": <1-5>, "comprehensiveness": <1-5>, "helpfulness": <1-5>, "relevance": <1-5>, "justification": "<one or two sentences>"}}"""

PAIRWISE_SYSTEM = f"""You are an impartial, experienced physician who compares two answers that AI assistants gave to the same patient.
Consider these four dimensions together:

{chr(10).join(f"{name.capitalize()}: {text}" for name, text in DEFINITIONS.items())}

Decide which answer is better overall, or whether they are equally good. The order in which the answers are shown
must not influence you, nor their length alone.
Reply with only a JSON object, no other text, of exactly this form:
{{"winner": "A" or "B" or "tie", "justification": "<one or two sentences>"}}"""

REPAIR_REQUEST = ("Your reply could not be read. Reply again with only the JSON object in the required form, "
                  "with integer scores from 1 to 5, and nothing else.")
PAIRWISE_REPAIR_REQUEST = ("Your reply could not be read. Reply again with only the JSON object in the required "
                           'form, with "winner" set to "A", "B" or "tie", and nothing else.')

POINTWISE_SCHEMA = {
    "type": "object",
    "properties": {**{d: {"type": "integer", "enum": [1, 2, 3, 4, 5]} for d in DIMENSIONS},
                   "justification": {"type": "string"}},
    "required": [*DIMENSIONS, "justification"],
    "additionalProperties": False,
}
PAIRWISE_SCHEMA = {
    "type": "object",
    "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "justification": {"type": "string"}},
    "required": ["winner", "justification"],
    "additionalProperties": False,
}


def _section(title: str, text: str) -> str:
    return f"[{title}]\n{text.strip()}\n[End of {title.lower()}]"


def pointwise_messages(question: str, response: str, reference: str | None = None) -> list[dict]:
    """Chat messages that ask for the four scores of one response.

    Blind by construction: only the question, the response (and optionally the physician's
    reference answer) are shown; the name of the system that wrote the response never is.
    """
    parts = [_section("Patient question", question)]
    if reference is not None:
        parts.append(_section("Reference answer written by a physician", reference))
    parts.append(_section("Answer to evaluate", response))
    return [{"role": "system", "content": POINTWISE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def pairwise_messages(question: str, response_a: str, response_b: str, reference: str | None = None) -> list[dict]:
    """Chat messages that ask which of two responses (shown as A and B) is better; blind as above."""
    parts = [_section("Patient question", question)]
    if reference is not None:
        parts.append(_section("Reference answer written by a physician", reference))
    parts += [_section("Answer A", response_a), _section("Answer B", response_b)]
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def repair_messages(messages: list[dict], raw: str, pairwise: bool = False) -> list[dict]:
    """The one repair attempt: the same conversation, the unreadable reply, and a request to fix it."""
    request = PAIRWISE_REPAIR_REQUEST if pairwise else REPAIR_REQUEST
    return [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": request}]
