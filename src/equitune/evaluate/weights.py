"""The rubric's category weights and score tiers: small and import-light, so the configuration can hold them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

CATEGORIES: tuple[str, ...] = ("financial_accuracy", "investment_reasoning", "technical_depth", "structure_quality")


class RubricWeights(BaseModel):
    """Weights of the four rubric categories in the total score (fractions that sum to 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    financial_accuracy: float = Field(
        0.25, ge=0.0, le=1.0, description="Figures match the data; derived figures right; internally consistent."
    )
    investment_reasoning: float = Field(
        0.30, ge=0.0, le=1.0, description="Rating, target and upside stated and consistent; catalysts; risks."
    )
    technical_depth: float = Field(
        0.25, ge=0.0, le=1.0, description="DCF, WACC, terminal value, named peers, sensitivity, sector knowledge."
    )
    structure_quality: float = Field(
        0.20, ge=0.0, le=1.0, description="Headers, bullets, the task's sections, length, disclaimer."
    )

    @model_validator(mode="after")
    def _sum_to_one(self) -> RubricWeights:
        total = sum(self.as_dict().values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"rubric weights must sum to 1, got {total:.6g} ({self.as_dict()})")
        return self

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in CATEGORIES}


DEFAULT_WEIGHTS = RubricWeights()


@dataclass(frozen=True)
class Tier:
    """A score band: its name, lowest score and what it means."""

    name: str
    minimum: float
    meaning: str


TIERS: tuple[Tier, ...] = (
    Tier("Excellent", 80.0, "production ready"),
    Tier("Good", 65.0, "usable after light review"),
    Tier("Acceptable", 50.0, "needs substantial editing"),
    Tier("Poor", 0.0, "not usable"),
)


def tier_for(score: float) -> Tier:
    """The tier of a 0-100 score (Excellent >= 80, Good >= 65, Acceptable >= 50, else Poor)."""
    return next(t for t in TIERS if score >= t.minimum)
