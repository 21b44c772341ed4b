"""The judge stage: a small audio network trained on the embedded dataset as instrument
classifier and CLAP-style text-audio model, used by the harness to score generations.

`model.py` (the network and its config), `family.py` (training), `api.py`
(`Judge.from_pretrained`) and `eval.py` (its own held-out check).
"""
