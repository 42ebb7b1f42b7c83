"""Persistent external object ids, kept apart from the tracker's internal slots.

The tracker (SAM2 or the weight-free one) addresses objects by a *slot*; downstream consumers
(ROS topics, evaluation) need ids that never change meaning within a stream. Keeping the two
apart (as Cutie/DEVA's object managers do) lets a slot be freed and reused while an id is
retired for good, so an id seen by a consumer always denotes the same physical object.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Entry:
    obj_id: int
    slot: int
    created_frame: int
    last_prompt_frame: int
    num_prompts: int


class ObjectRegistry:
    """Maps persistent ids (1, 2, 3, ...) to tracker slots, with a cap on live objects.

    Ids are never reused within a stream (until `reset`). An object that stops, is occluded
    and moves again keeps its id for as long as its track is alive: motion state and
    visibility are per-frame attributes, not reasons to retire an id.
    """

    def __init__(self, max_objects: int) -> None:
        self.max_objects = int(max_objects)
        self._by_id: dict[int, _Entry] = {}
        self._next_id = 1
        self._next_slot = 0

    def reset(self) -> None:
        """Forget all objects; ids restart at 1 (a new stream)."""
        self._by_id.clear()
        self._next_id = 1
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def full(self) -> bool:
        """True when `max_objects` objects are alive."""
        return len(self._by_id) >= self.max_objects

    @property
    def ids(self) -> list[int]:
        """Live ids, ascending."""
        return sorted(self._by_id)

    def add(self, frame_idx: int) -> tuple[int, int]:
        """Register a new object prompted on `frame_idx`; returns (obj_id, slot).

        Slots are handed out in increasing order and never recycled either: SAM2 state is
        per slot, and a fresh slot guarantees no memory leaks from a released object.
        """
        if self.full:
            raise RuntimeError(f"max_objects={self.max_objects} reached")
        obj_id, slot = self._next_id, self._next_slot
        self._next_id += 1
        self._next_slot += 1
        self._by_id[obj_id] = _Entry(obj_id, slot, frame_idx, frame_idx, 1)
        return obj_id, slot

    def release(self, obj_id: int) -> int:
        """Retire `obj_id` (its id is never reused); returns the slot it held."""
        return self._by_id.pop(obj_id).slot

    def slot_of(self, obj_id: int) -> int:
        """Tracker slot of a live id."""
        return self._by_id[obj_id].slot

    def id_of_slot(self, slot: int) -> int | None:
        """Live id occupying `slot`, or None."""
        for e in self._by_id.values():
            if e.slot == slot:
                return e.obj_id
        return None

    def note_prompt(self, obj_id: int, frame_idx: int) -> None:
        """Record that `obj_id` was (re-)prompted on `frame_idx`."""
        e = self._by_id[obj_id]
        e.last_prompt_frame = frame_idx
        e.num_prompts += 1

    def last_prompt_frame(self, obj_id: int) -> int:
        """Frame of the most recent prompt of `obj_id`."""
        return self._by_id[obj_id].last_prompt_frame

    def num_prompts(self, obj_id: int) -> int:
        """Number of prompts `obj_id` received so far."""
        return self._by_id[obj_id].num_prompts
