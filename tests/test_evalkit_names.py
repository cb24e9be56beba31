"""Name matching rules, one hand-built case each, and the trie against a naive per-form regex scan."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit.names import NameMatcher, is_alias, name_forms, word_key, words

NAMES = {
    "condition": ["Type 2 diabetes", "Diabetes", "Panic disorder", "Athlete's foot", "Kidney stone", "Headache",
                  "Coagulation (bleeding) disorder", "Intertrigo (skin condition)", "Vaginal yeast infection",
                  "Chronic obstructive pulmonary disease (COPD)", "Drug abuse", "Drug abuse (cocaine)", "Anemia"],
    "test": ["Depression screen (Depression screening)", "Plain x-ray (X ray)", "Incision and drainage (I d)",
             "Other diagnostic procedures (interview; evaluation; consultation)", "Laparoscopy (GI only) (Laparoscopy)",
             "Electroencephalogram (EEG) (Eeg)", "Anemia"],
    "medication": ["Alprazolam (Xanax)", "Lorazepam", "Hepatitis B Vaccine (Obsolete)", "Neomycin (Septa)",
                   "Bacitracin (Septa)", "Cocaine"],
}


@pytest.fixture(scope="module")
def matcher() -> NameMatcher:
    return NameMatcher(NAMES)


def found(matcher: NameMatcher, text: str) -> list[tuple[str, str]]:
    """(name, the text it was found as) for every mention."""
    return [(m.name, text[m.start:m.end]) for m in matcher.find(text)]


def test_case_insensitive_and_word_boundaries(matcher):
    assert found(matcher, "Take LORAZEPAM now") == [("Lorazepam", "LORAZEPAM")]
    assert found(matcher, "lorazepamine, prediabetes and diabetesx are other words") == []
    assert found(matcher, "diabetes.") == [("Diabetes", "diabetes")]
    assert found(matcher, "(diabetes)") == [("Diabetes", "diabetes")]


@pytest.mark.parametrize("text,surface", [
    ("start alprazolam", "alprazolam"), ("start Xanax", "Xanax"),
    ("start Alprazolam (Xanax) today", "Alprazolam (Xanax"),
])  # a span runs from the first word to the last word of the mention
def test_parenthetical_alias_medication(matcher, text, surface):
    assert found(matcher, text) == [("Alprazolam (Xanax)", surface)]


@pytest.mark.parametrize("text", ["a depression screen", "a Depression Screening",
                                  "a depression screen (depression screening)"])
def test_parenthetical_alias_test(matcher, text):
    assert [m.name for m in matcher.find(text)] == ["Depression screen (Depression screening)"]


@pytest.mark.parametrize("text", ["kidney stones", "Kidney Stone", "headaches", "athlete's foot", "Athlete\u2019s foot",
                                  "athletes foot", "athletes' foot", "athlete foot"])
def test_plurals_and_possessives(matcher, text):
    assert len(matcher.find(text)) == 1


def test_longest_match_first(matcher):
    assert found(matcher, "You have type 2 diabetes.") == [("Type 2 diabetes", "type 2 diabetes")]
    assert found(matcher, "type-2 Diabetes or diabetes") == [("Type 2 diabetes", "type-2 Diabetes"),
                                                            ("Diabetes", "diabetes")]
    assert [m.name for m in matcher.find("a vaginal yeast infection")] == ["Vaginal yeast infection"]
    assert found(matcher, "drug abuse (cocaine)") == [("Drug abuse (cocaine)", "drug abuse (cocaine")]


def test_x_ray_spellings(matcher):
    for text in ("an X-ray", "an x ray", "a plain X-Ray", "a plain x-ray (X ray)"):
        assert [m.name for m in matcher.find(text)] == ["Plain x-ray (X ray)"], text


def test_group_inside_a_name_gives_no_alias(matcher):
    assert [m.name for m in matcher.find("a coagulation disorder")] == ["Coagulation (bleeding) disorder"]
    assert [m.name for m in matcher.find("a Coagulation (bleeding) disorder")] == ["Coagulation (bleeding) disorder"]
    assert matcher.find("bleeding gums") == []


@pytest.mark.parametrize("text", ["a skin condition", "an interview", "evaluation and consultation", "I'd say I d",
                                  "obsolete", "GI only", "chronic obstructive disease"])
def test_qualifiers_and_labels_are_not_aliases(matcher, text):
    assert matcher.find(text) == []


def test_aliases_that_are_names(matcher):
    assert [m.name for m in matcher.find("COPD")] == ["Chronic obstructive pulmonary disease (COPD)"]
    assert [m.name for m in matcher.find("an EEG")] == ["Electroencephalogram (EEG) (Eeg)"]
    assert [m.name for m in matcher.find("intertrigo")] == ["Intertrigo (skin condition)"]
    assert [m.name for m in matcher.find("a laparoscopy")] == ["Laparoscopy (GI only) (Laparoscopy)"]
    assert [m.name for m in matcher.find("hepatitis b vaccines")] == ["Hepatitis B Vaccine (Obsolete)"]


@pytest.mark.parametrize("group,expected", [
    ("Xanax", True), ("COPD", True), ("Depression screening", True), ("tennis elbow", True), ("swimmer's ear", True),
    ("skin condition", False), ("ear disorder", False), ("yeast infection", False), ("Obsolete", False), ("Usp", False),
    ("interview; evaluation; consultation", False), ("not heart and head", False), ("other than hip or femur", False),
    ("GI only", False), ("I d", False), ("ML", False), ("F-", False), ("chronic skin condition", True),
])
def test_is_alias(group, expected):
    assert is_alias(group) is expected


def test_ambiguous_alias_matches_nothing_and_is_listed(matcher):
    assert matcher.find("apply Septa") == []
    assert [m.name for m in matcher.find("apply neomycin")] == ["Neomycin (Septa)"]
    entry = next(d for d in matcher.dropped if d["form"] == "septa")
    assert entry["reason"] == "ambiguous" and entry["kept"] is None
    assert entry["names"] == [["medication", "Bacitracin (Septa)"], ["medication", "Neomycin (Septa)"]]


def test_shared_forms_rules(matcher):
    # A name that is both a condition and a test: the earlier category (conditions) owns it.
    assert [(m.name, m.category) for m in matcher.find("anemia")] == [("Anemia", "condition")]
    entry = next(d for d in matcher.dropped if d["form"] == "anemia")
    assert entry["reason"] == "shared" and entry["kept"] == ["condition", "Anemia"]
    # A full name beats an alias, whatever the category: "cocaine" is the medication, not Drug abuse (cocaine).
    assert [(m.name, m.category) for m in matcher.find("cocaine")] == [("Cocaine", "medication")]
    # A full name beats a base: "drug abuse" is Drug abuse, not Drug abuse (cocaine).
    assert [m.name for m in matcher.find("drug abuse")] == ["Drug abuse"]


def test_named_dedupes_in_order_of_first_mention(matcher):
    text = "Xanax, then lorazepam, then alprazolam again; an EEG and x-rays; maybe diabetes or panic disorder."
    assert matcher.named(text) == {"condition": ["Diabetes", "Panic disorder"],
                                   "test": ["Electroencephalogram (EEG) (Eeg)", "Plain x-ray (X ray)"],
                                   "medication": ["Alprazolam (Xanax)", "Lorazepam"]}


@pytest.mark.parametrize("word,key", [
    ("rash", "rash"), ("rashes", "rash"), ("headache", "headach"), ("headaches", "headach"), ("glass", "glass"),
    ("glasses", "glass"), ("allergies", "allergy"), ("allergy", "allergy"), ("virus", "virus"), ("viruses", "virus"),
    ("diagnosis", "diagnosis"), ("gas", "gas"), ("als", "als"), ("crohn's", "crohn"), ("pvcs", "pvc"),
    ("lupus", "lupus"), ("don't", "don't"),
])
def test_word_key(word, key):
    assert word_key(word) == key


def test_words_keep_offsets():
    text = "Athlete\u2019s FOOT, x-ray!"
    assert [(k, text[s:e]) for k, s, e in words(text)] == [("athlet", "Athlete\u2019s"), ("foot", "FOOT"),
                                                             ("x", "x"), ("ray", "ray")]


def test_offsets_survive_case_folding_that_changes_length(matcher):
    text = "\u0130stanbul: LORAZEPAM"  # "\u0130".lower() is two characters
    assert found(matcher, text) == [("Lorazepam", "LORAZEPAM")]


def test_name_forms():
    assert name_forms("Alprazolam (Xanax)") == [(("alprazolam", "xanax"), 0), (("alprazolam",), 1), (("xanax",), 2)]
    assert name_forms("Coagulation (bleeding) disorder") == [(("coagulation", "bleeding", "disorder"), 0),
                                                            (("coagulation", "disorder"), 1)]


def naive_find(names: dict, text: str) -> list[tuple[str, int, int]]:
    """Reference: one regex scan per form over the text's word keys, then leftmost-longest selection."""
    ws = words(text)
    keys = " ".join(k for k, _, _ in ws)
    starts = [0]
    for k, _, _ in ws[:-1]:
        starts.append(starts[-1] + len(k) + 1)
    index = {s: i for i, s in enumerate(starts)}
    owner = {" ".join(key): name for key, (_, name) in NameMatcher(names).owners.items()}
    candidates = {}
    for form, name in owner.items():
        for hit in re.finditer(r"(?<!\S)" + re.escape(form) + r"(?!\S)", keys):
            i = index[hit.start()]
            n = form.count(" ") + 1
            if n > candidates.get(i, (0, ""))[0]:
                candidates[i] = (n, name)
    out, i = [], 0
    while i < len(ws):
        if i in candidates:
            n, name = candidates[i]
            out.append((name, ws[i][1], ws[i + n - 1][2]))
            i += n
        else:
            i += 1
    return out


VOCAB = sorted({w for names in NAMES.values() for n in names for w in re.findall(r"[\w']+|[()]", n)}
               | {"and", "the", "x-ray", "stones", "Xanax", "a", ",", "."})


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(VOCAB), max_size=30))
def test_trie_equals_naive_scan(tokens):
    text = " ".join(tokens)
    matcher = NameMatcher(NAMES)
    assert [(m.name, m.start, m.end) for m in matcher.find(text)] == naive_find(NAMES, text)
