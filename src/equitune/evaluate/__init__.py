"""Evaluation of research text: the numeric fact-check, the scoring rubric, and scoring files of model outputs.

``factcheck`` labels every figure of a report against the company's facts and the finance engine's outputs;
``rubric`` turns that and explicit structural checks into a 0-100 score with every check listed; ``scoring``
reads a JSONL file of model outputs and scores each line against the data the training prompts were built from.
"""
