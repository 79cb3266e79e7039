"""Step 3, preference construction: every user has a latent preference over the non-functional attributes.

A user's weights ``w`` are drawn from a Dirichlet(``concentration``) over :data:`~petool_lib.synthesis.understanding.ATTRIBUTES`
(small concentrations give users who care about one or two attributes). Provider attribute vectors are z-scored
per attribute over all providers, and the user's utility for a provider is

    u(user, provider) = w . z(provider) + noise * g(user, provider)

where ``g`` is a standard Gumbel draw fixed per (seed, user, provider). Because the noise belongs to the provider and
not to the group, each user has one total order over providers: in every functional group the preferred tool is the
best-aligned provider of that group (up to the controlled noise), so preferences are consistent across groups and
learnable from the tools the user chose elsewhere.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .understanding import ATTRIBUTES


def _unit(*parts: Any) -> float:
    """A deterministic uniform number in (0, 1) from the parts."""
    h = int(hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).hexdigest()[:13], 16)
    return (h + 0.5) / float(1 << 52)


@dataclass
class User:
    """One simulated user: latent attribute weights, and what the synthesis recorded about their choices."""

    user_id: str
    weights: np.ndarray
    preferred: dict[str, str] = field(default_factory=dict)  # group id -> preferred provider
    tool_comb: list[str] = field(default_factory=list)  # preferred providers ("<Cat>.<Tool>")

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "weights": {a: round(float(w), 6) for a, w in zip(ATTRIBUTES, self.weights)},
                "top_attribute": ATTRIBUTES[int(np.argmax(self.weights))], "preferred": dict(sorted(self.preferred.items())),
                "tool_comb": self.tool_comb}


class PreferenceModel:
    """Utilities of providers for users (see the module docstring)."""

    def __init__(self, profiles: dict[str, np.ndarray], seed: int = 0, noise: float = 0.3, concentration: float = 0.5) -> None:
        self.seed = seed
        self.noise = float(noise)
        self.concentration = float(concentration)
        self.providers = sorted(profiles)
        mat = np.array([profiles[p] for p in self.providers], dtype=np.float64).reshape(len(self.providers), len(ATTRIBUTES))
        mu, sd = mat.mean(axis=0), mat.std(axis=0)
        sd[sd < 1e-9] = 1.0
        self.z = {p: (mat[i] - mu) / sd for i, p in enumerate(self.providers)}

    def sample_user(self, rng: np.random.Generator, user_id: str) -> User:
        w = rng.dirichlet([self.concentration] * len(ATTRIBUTES))
        return User(user_id=user_id, weights=w)

    def aligned_utility(self, user: User, provider: str) -> float:
        return float(user.weights @ self.z[provider])

    def utility(self, user: User, provider: str) -> float:
        g = -math.log(-math.log(_unit(self.seed, user.user_id, provider)))
        return self.aligned_utility(user, provider) + self.noise * g

    def rank(self, user: User, providers: Iterable[str]) -> list[str]:
        """Providers from most to least preferred (ties by name)."""
        return sorted(providers, key=lambda p: (-self.utility(user, p), p))

    def preferred(self, user: User, providers: Sequence[str]) -> str:
        return self.rank(user, providers)[0]

    def aligned(self, user: User, providers: Sequence[str]) -> str:
        """The noise-free best-aligned provider (for the consistency report)."""
        return sorted(providers, key=lambda p: (-self.aligned_utility(user, p), p))[0]
