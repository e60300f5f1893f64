"""When a run stops improving: the early-stopping rule.

A run ends when the validation Dice has not risen by more than ``MARGIN`` above
its best for ``patience`` validations in a row. The patience is a share of the
validations the run plans (``PATIENCE_SHARE``, at least ``MIN_PATIENCE``): the
learning rate decays over the planned length, so a longer run improves more slowly
per validation and is given proportionally longer to do so. The margin keeps
validation noise (a few images, a Dice that wobbles by a few thousandths) from
resetting the count forever. A quarter of the run is patient enough to outlast the
plateau that a run can sit on at its peak learning rate before the decay lifts it:
on DSB2018 brightfield (4 validation images, a Dice that wobbles by 0.03) the Dice
stays near 0.76 from epoch 7 to 15 of 40 and ends at 0.82; a patience of 6 ended
that run at epoch 13. The best adapter is kept whatever the rule says:
this rule only decides when to stop looking for a better one.

The rule is a small pure object with a JSON-able state, saved in the checkpoint,
so a resumed run ends at the step an uninterrupted one would. Nothing here imports
torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MARGIN = 0.005  # Dice: a rise of this much or less is not an improvement
PATIENCE_SHARE = 0.25  # of the planned validations (40 epochs: 10)
MIN_PATIENCE = 3


def patience_for(planned_validations: int) -> int:
    """Validations without improvement that end a run of ``planned_validations``."""
    return max(MIN_PATIENCE, math.ceil(PATIENCE_SHARE * planned_validations))


@dataclass
class EarlyStop:
    """Feed it each validation's Dice with :meth:`update`; ``ended`` says to stop."""

    patience: int
    margin: float = MARGIN
    best: float | None = None  # the Dice the next must beat by more than the margin
    best_epoch: int = 0
    waited: int = 0  # validations since ``best``
    ended: bool = False

    def update(self, epoch: int, dice: float | None) -> bool:
        """Takes the Dice of the validation after ``epoch`` (None: nothing to judge by, as
        without validation images); returns ``ended``."""
        if dice is None or self.ended:
            return self.ended
        if self.best is None or dice > self.best + self.margin:
            self.best, self.best_epoch, self.waited = dice, epoch, 0
        else:
            self.waited += 1
            self.ended = self.waited >= self.patience
        return self.ended

    def reason(self, best_dice: float | None, best_epoch: int) -> str:
        """Why the run ended, for a person: the run's best Dice (which the margin may
        place after ``self.best_epoch``) and its epoch."""
        dice = "–" if best_dice is None else f"{best_dice:.3f}"
        return (f"no improvement for {self.waited} validations; best Dice {dice} at epoch "
                f"{best_epoch}")

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> EarlyStop:
        return cls(**state)
