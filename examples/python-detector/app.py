"""The component's exports (world `detector` of wit/detector.wit): a thin
shell around velocity.Velocity, which holds the logic."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

from velocity import Velocity

_detector = None


def _counter_add(keys, now_ms, window_ms, deltas):
    return host.counter_add(types.CounterSteps(keys, now_ms, window_ms, deltas))


class WitWorld(wit_world.WitWorld):
    def info(self) -> types.Info:
        return types.Info(
            "0.1.0",
            "velocity in Python: request and token volume per account, API key and payment instrument",
        )

    def init(self, config: str) -> None:
        global _detector
        try:
            _detector = Velocity(config)
        except ValueError as e:
            raise Err(str(e))

    def score(self, batch: types.Batch) -> types.Signals:
        if _detector is None:
            raise Err("score called before init")
        # The batch arrives as columns; Velocity reads them as they are.
        scores, notes = _detector.score(batch, _counter_add)
        return types.Signals(scores, [types.Note(i, labels, reason) for i, labels, reason in notes])
