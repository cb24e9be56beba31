"""The demo's dataset: patient-doctor exchanges in GenMedGPT-5k's format, written from our own small table.

Everything here is this project's own writing (a hand-made table of common conditions and template
sentences); nothing is copied from GenMedGPT-5k or its disease database. It is NOT medical advice and
NOT a benchmark: it only gives the CPU demo a task with the same shape as the paper's, where a tiny
model can visibly learn to map described symptoms to a condition, tests and medicines.

Two outputs: `make_records` (instruction/input/output, the fine-tuning data) and `make_corpus` (plain
encyclopaedia-style sentences about the same conditions, the demo base model's "pretraining" text).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

INSTRUCTION = "You are a doctor. Read the patient's message and answer it based on the symptoms they describe."

# (condition, symptoms, tests, medicines): a small table written for this demo.
CONDITIONS = [
    ("migraine", ["a throbbing headache", "sensitivity to light", "nausea", "blurred vision"],
     ["a neurological exam", "a head CT scan"], ["ibuprofen", "sumatriptan"]),
    ("asthma", ["shortness of breath", "wheezing", "a tight chest", "a cough at night"],
     ["a lung function test", "a chest x-ray"], ["an albuterol inhaler", "inhaled steroids"]),
    ("the flu", ["a high fever", "body aches", "chills", "a sore throat"],
     ["a rapid flu test", "a blood count"], ["oseltamivir", "acetaminophen"]),
    ("strep throat", ["a very sore throat", "swollen glands", "pain when swallowing", "a fever"],
     ["a throat swab", "a rapid strep test"], ["amoxicillin", "throat lozenges"]),
    ("a urinary tract infection", ["burning when urinating", "frequent urination", "cloudy urine", "lower belly pain"],
     ["a urine test", "a urine culture"], ["nitrofurantoin", "plenty of fluids"]),
    ("acid reflux", ["heartburn after meals", "a sour taste in the mouth", "chest burning", "trouble swallowing"],
     ["an upper endoscopy", "a pH test"], ["omeprazole", "antacids"]),
    ("eczema", ["itchy skin", "dry red patches", "cracked skin", "skin that weeps fluid"],
     ["a skin exam", "an allergy patch test"], ["hydrocortisone cream", "a thick moisturizer"]),
    ("anemia", ["tiredness", "pale skin", "dizziness", "cold hands and feet"],
     ["a complete blood count", "an iron level test"], ["iron tablets", "vitamin B12"]),
    ("high blood pressure", ["morning headaches", "a pounding in the ears", "nosebleeds", "dizziness"],
     ["a blood pressure check", "a kidney function test"], ["lisinopril", "amlodipine"]),
    ("type 2 diabetes", ["constant thirst", "frequent urination", "weight loss", "slow healing cuts"],
     ["a fasting glucose test", "an HbA1c test"], ["metformin", "a low sugar diet"]),
    ("an ear infection", ["ear pain", "muffled hearing", "fluid from the ear", "a fever"],
     ["an ear exam", "a hearing test"], ["amoxicillin", "ear drops"]),
    ("a sinus infection", ["pressure in the face", "a blocked nose", "thick yellow mucus", "a headache"],
     ["a nasal exam", "a sinus CT scan"], ["a saline rinse", "a nasal steroid spray"]),
    ("gout", ["sudden pain in the big toe", "a hot swollen joint", "red skin over the joint", "stiffness"],
     ["a uric acid test", "a joint fluid test"], ["colchicine", "naproxen"]),
    ("kidney stones", ["sharp pain in the side", "blood in the urine", "pain that comes in waves", "vomiting"],
     ["a kidney ultrasound", "a urine test"], ["tamsulosin", "pain relief"]),
    ("an underactive thyroid", ["weight gain", "feeling cold", "dry hair", "constant tiredness"],
     ["a TSH blood test", "a thyroid ultrasound"], ["levothyroxine", "regular thyroid checks"]),
    ("pneumonia", ["a cough with phlegm", "a high fever", "chest pain when breathing", "shortness of breath"],
     ["a chest x-ray", "a sputum culture"], ["azithromycin", "rest and fluids"]),
    ("conjunctivitis", ["red eyes", "itchy eyes", "a sticky discharge", "crusty eyelids"],
     ["an eye exam", "an eye swab"], ["antibiotic eye drops", "cool compresses"]),
    ("tonsillitis", ["swollen tonsils", "a sore throat", "bad breath", "a hoarse voice"],
     ["a throat exam", "a throat swab"], ["penicillin", "warm salt water gargles"]),
    ("a panic disorder", ["sudden fear", "a racing heart", "sweating", "a feeling of choking"],
     ["a heart tracing", "a mental health assessment"], ["talking therapy", "sertraline"]),
    ("low back strain", ["lower back pain", "muscle spasms", "pain when bending", "stiffness in the morning"],
     ["a spine exam", "a back x-ray"], ["physical therapy", "ibuprofen"]),
    ("shingles", ["a painful rash on one side", "blisters", "burning skin", "itching"],
     ["a skin exam", "a blister swab"], ["valacyclovir", "calamine lotion"]),
    ("food poisoning", ["vomiting", "watery diarrhea", "stomach cramps", "a mild fever"],
     ["a stool test", "a blood test"], ["oral rehydration salts", "rest and fluids"]),
]

OPENERS = ["Doctor, I have", "Hi doctor, I have been having", "Hello, for a few days I have had",
           "Doctor, lately I keep getting", "I am worried because I have"]
CLOSERS = ["What could it be?", "What should I do?", "Is this serious?", "Can you help me?", ""]
DIAGNOSES = ["Based on your symptoms, it sounds like you may have {c}.",
             "From what you describe, this is most likely {c}.",
             "These symptoms are typical of {c}."]
TESTS = ["We should do {t} to confirm it.", "I would like to order {t} to be sure.",
         "To confirm, we will need {t}."]
MEDS = ["I recommend {m}.", "The usual treatment is {m}.", "You can start with {m}."]
FACTS = ["{C} is a common condition.", "People with {c} often have {s}.", "A sign of {c} can be {s}.",
         "Doctors check for {c} with {t}.", "{C} is often treated with {m}.", "{M} is used for {c}.",
         "{S} may point to {c}."]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_records(n: int, seed: int = 0) -> list[dict]:
    """`n` exchanges: a patient names 2-3 symptoms of a condition; the doctor names it, tests, medicines."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        cond, symptoms, tests, meds = CONDITIONS[i % len(CONDITIONS)]
        said = rng.sample(symptoms, rng.choice([2, 3]))
        patient = f"{rng.choice(OPENERS)} {_join(said)}. {rng.choice(CLOSERS)}".strip()
        doctor = " ".join([rng.choice(DIAGNOSES).format(c=cond), rng.choice(TESTS).format(t=_join(tests)),
                           rng.choice(MEDS).format(m=_join(meds))])
        records.append({"instruction": INSTRUCTION, "input": patient, "output": doctor})
    rng.shuffle(records)
    return records


def make_corpus(n_sentences: int, seed: int = 1) -> list[str]:
    """Plain sentences about the same conditions (the knowledge) and the doctor's stock phrases about a
    random condition (the language), without the dialogue format or any symptom -> condition pairing."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        cond, symptoms, tests, meds = rng.choice(CONDITIONS)
        s, t, m = rng.choice(symptoms), rng.choice(tests), rng.choice(meds)
        if rng.random() < 0.7:
            out.append(rng.choice(FACTS).format(c=cond, C=_cap(cond), s=s, S=_cap(s), t=t, m=m, M=_cap(m)))
        else:
            out.append(rng.choice(DIAGNOSES + TESTS + MEDS).format(c=cond, t=_join(tests), m=_join(meds)))
    return out


def write_demo_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """Write `make_records(n, seed)` as a JSON list (GenMedGPT-5k's file format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(make_records(n, seed), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
