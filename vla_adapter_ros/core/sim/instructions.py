"""Natural-language instructions for Meta-World tasks: training paraphrases and a held-out set.

Per task, ``train`` holds the templates demonstrations are recorded with and
``heldout`` holds paraphrases that training never sees (different verbs,
word order and phrasing), to measure whether a policy follows the meaning of
an instruction rather than its exact string. The two sets are disjoint after
:func:`vla_adapter_ros.processing.normalize_instruction` and lower-casing.

Covered: every Meta-World v3 task (MT50). Keys are Meta-World v3 names.
Plain Python: no numpy, no Meta-World import.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInstructions:
    train: tuple[str, ...]
    heldout: tuple[str, ...]


def _t(train: tuple[str, ...], heldout: tuple[str, ...]) -> TaskInstructions:
    return TaskInstructions(train, heldout)


INSTRUCTIONS: dict[str, TaskInstructions] = {
    # -- MT10 ----------------------------------------------------------------------------------------
    "reach-v3": _t(
        ("reach the target", "move the gripper to the goal position", "reach to the target point",
         "go to the target location", "move your hand to the goal"),
        ("touch the marked spot with the gripper", "bring the end effector over to the goal point",
         "put your hand where the target is")),
    "push-v3": _t(
        ("push the puck to the goal", "slide the puck to the target", "push the red puck to the green spot",
         "shove the puck over to the goal position", "move the puck to the target by pushing it"),
        ("nudge the disc along the table until it reaches the goal", "drive the puck toward the marked location",
         "get the puck onto the target without lifting it")),
    "pick-place-v3": _t(
        ("pick up the puck and place it at the goal", "grasp the puck and put it on the target",
         "pick the red puck and move it to the goal", "lift the puck and set it down at the target",
         "pick and place the puck at the goal position"),
        ("take hold of the disc and carry it to the marked spot", "grab the puck, raise it, and drop it on the target",
         "transport the puck through the air to the goal")),
    "door-open-v3": _t(
        ("open the door", "pull the door open", "swing the door open by its handle",
         "open the black door", "grab the door handle and open the door"),
        ("get that door open", "rotate the door outward on its hinge", "make the cabinet door swing wide")),
    "drawer-open-v3": _t(
        ("open the drawer", "pull the drawer open", "pull the drawer out by its handle",
         "slide the drawer open", "open the drawer by its handle"),
        ("draw the drawer out toward you", "get the drawer open", "extend the drawer by tugging its handle")),
    "drawer-close-v3": _t(
        ("close the drawer", "push the drawer closed", "shut the drawer",
         "slide the drawer shut", "push the drawer all the way in"),
        ("push the drawer back into the cabinet", "make the drawer shut completely", "return the drawer to closed")),
    "button-press-topdown-v3": _t(
        ("press the button from the top", "push the button down", "press down on the red button",
         "push the button from above", "press the top button"),
        ("hit the button with a downward push", "depress the button vertically", "tap the button from overhead")),
    "peg-insert-side-v3": _t(
        ("insert the peg into the hole", "put the peg in the hole from the side", "pick up the peg and insert it",
         "slide the peg into the box hole", "insert the green peg sideways into the hole"),
        ("grab the stick and push it into the opening", "fit the peg into the slot on the side",
         "plug the peg into the hole in the block")),
    "window-open-v3": _t(
        ("open the window", "slide the window open", "slide the window sideways to open it",
         "slide the window pane open", "open the sliding window"),
        ("move the window sash aside so it is open", "get the window open", "shift the glass panel open")),
    "window-close-v3": _t(
        ("close the window", "slide the window closed", "slide the window sideways to close it",
         "slide the window pane shut", "shut the sliding window"),
        ("move the window sash back so it is closed", "get the window shut", "shift the glass panel closed")),
    # -- more tasks ----------------------------------------------------------------------------------
    "button-press-v3": _t(
        ("press the button", "push the button in", "press the red button from the front",
         "push the button forward", "press the button on the box"),
        ("poke the button horizontally", "hit the button straight ahead", "depress the button from the front side")),
    "door-close-v3": _t(
        ("close the door", "push the door shut", "swing the door closed",
         "shut the black door", "push the open door closed"),
        ("get that door closed", "rotate the door back onto its frame", "make the cabinet door shut")),
    "faucet-open-v3": _t(
        ("open the faucet", "turn the faucet on", "rotate the faucet handle to open it",
         "turn on the tap", "twist the faucet open"),
        ("start the water by turning the handle", "swivel the tap handle to the open side",
         "get the faucet running")),
    "faucet-close-v3": _t(
        ("close the faucet", "turn the faucet off", "rotate the faucet handle to close it",
         "turn off the tap", "twist the faucet closed"),
        ("stop the water by turning the handle", "swivel the tap handle to the closed side",
         "shut off the faucet")),
    "handle-press-v3": _t(
        ("press the handle down", "push the handle down", "press down on the handle",
         "push the lever handle downward", "press the handle"),
        ("force the handle to the bottom", "lower the handle by pushing on it", "bear down on the handle")),
    "handle-pull-v3": _t(
        ("pull the handle up", "lift the handle", "pull up on the handle",
         "raise the handle", "pull the handle upward"),
        ("bring the handle to the top", "hook the handle and draw it upward", "heave the handle up")),
    "lever-pull-v3": _t(
        ("pull the lever up", "lift the lever", "rotate the lever upward",
         "raise the lever", "pull up the blue lever"),
        ("swing the lever arm to the top", "flip the lever up", "push the lever so it points upward")),
    "coffee-button-v3": _t(
        ("press the coffee machine button", "push the button on the coffee machine",
         "press the button to make coffee", "push the coffee maker button", "press the coffee button"),
        ("start the coffee maker", "hit the switch on the espresso machine", "brew coffee by pushing the button")),
    "coffee-push-v3": _t(
        ("push the mug under the coffee machine", "slide the cup to the coffee machine",
         "push the coffee mug to the machine", "move the mug under the spout by pushing",
         "push the cup beneath the coffee maker"),
        ("nudge the cup until it sits below the dispenser", "get the mug in place for brewing",
         "shove the coffee cup toward the machine")),
    "plate-slide-v3": _t(
        ("slide the plate into the goal", "push the plate into the net", "slide the plate forward into the goal",
         "push the plate to the target", "slide the puck plate into the cage"),
        ("shove the dish into the goal frame", "move the plate into the net by sliding it",
         "score the plate in the goal")),
    "sweep-into-v3": _t(
        ("sweep the puck into the hole", "push the puck into the hole", "sweep the block into the goal hole",
         "slide the puck into the opening", "sweep the cube into the hole"),
        ("brush the block across the table and into the hole", "knock the puck into the gap",
         "get the block to fall into the hole")),
    "basketball-v3": _t(
        ("put the ball in the basket", "dunk the basketball into the hoop", "pick up the ball and place it in the hoop",
         "score the ball in the basket", "drop the ball through the hoop"),
        ("grab the basketball and slam it through the ring", "carry the ball up to the net and let it fall in",
         "make a basket with the ball")),
    "dial-turn-v3": _t(
        ("turn the dial", "rotate the dial", "spin the dial",
         "turn the knob on the dial", "rotate the dial knob"),
        ("twist the knob around", "give the dial a turn", "crank the dial around")),
    "shelf-place-v3": _t(
        ("place the block on the shelf", "put the cube on the shelf", "pick up the block and set it on the shelf",
         "move the block onto the shelf", "put the block up on the shelf"),
        ("lift the cube and leave it on the rack", "store the block on the shelf", "set the cube onto the ledge")),
    "soccer-v3": _t(
        ("kick the ball into the goal", "push the soccer ball into the net", "score a goal with the ball",
         "push the ball into the goal", "move the soccer ball into the goal"),
        ("knock the football into the net", "get the ball past the goal line", "dribble the ball into the goal")),
    "hammer-v3": _t(
        ("hammer the nail", "pick up the hammer and hit the nail", "drive the nail in with the hammer",
         "use the hammer to push the nail in", "hit the nail with the hammer"),
        ("grab the hammer and pound the peg into the wall", "knock the nail flush using the hammer",
         "strike the nail until it goes in")),
    "box-close-v3": _t(
        ("close the box", "put the lid on the box", "pick up the lid and close the box",
         "place the lid onto the box", "cover the box with its lid"),
        ("grab the cover and seal the box", "set the top on the container", "shut the box using the lid")),
    "push-back-v3": _t(
        ("push the puck back to the goal", "slide the puck backward to the target", "push the block back",
         "move the puck back toward the goal", "push the puck away to the target"),
        ("drive the block in reverse to the marked spot", "shove the puck behind to the goal",
         "nudge the puck back onto the target")),
    "reach-wall-v3": _t(
        ("reach the target behind the wall", "move the gripper over the wall to the goal",
         "reach to the goal past the wall", "go around the wall to the target", "reach over the wall"),
        ("get your hand to the marked spot beyond the barrier", "touch the goal while avoiding the wall",
         "bring the end effector past the obstacle to the target")),
    "stick-push-v3": _t(
        ("push the bottle with the stick", "use the stick to push the bottle to the goal",
         "pick up the stick and push the bottle", "push the thermos with the stick", "grab the stick and push the can"),
        ("take the rod and shove the bottle forward", "move the bottle using the stick as a tool",
         "slide the flask toward the target with the stick")),
    # -- the rest of MT50 (with the above: every Meta-World v3 task) ----------------------------------
    "assembly-v3": _t(
        ("put the ring on the peg", "assemble the ring onto the peg", "pick up the nut and place it over the peg",
         "slide the ring down onto the peg", "fit the round nut onto the peg"),
        ("thread the washer over the post", "lower the ring so the peg goes through it",
         "mount the nut on the vertical pin")),
    "bin-picking-v3": _t(
        ("move the cube from one bin to the other", "pick the cube out of the bin and put it in the other bin",
         "transfer the block to the other bin", "pick up the cube and drop it in the target bin",
         "take the cube from the left bin to the right bin"),
        ("relocate the block into the second container", "lift the cube over the wall and release it in the next bin",
         "carry the small block across to the empty bin")),
    "button-press-topdown-wall-v3": _t(
        ("press the button from the top behind the wall", "push the button down past the wall",
         "reach over the wall and press the button", "press down on the button behind the wall",
         "push the walled button down from above"),
        ("get over the barrier and push the switch downward", "press the top of the button that sits behind a wall",
         "activate the button from above while avoiding the wall")),
    "button-press-wall-v3": _t(
        ("press the button behind the wall", "push the button past the wall", "reach around the wall and press the button",
         "press the button through the gap by the wall", "push the button on the far side of the wall"),
        ("get around the barrier and hit the button", "push in the switch hidden behind the wall",
         "activate the button without hitting the wall")),
    "coffee-pull-v3": _t(
        ("pull the mug from the coffee machine", "take the cup away from the coffee machine",
         "drag the mug out of the coffee machine", "pull the coffee cup to the target", "slide the mug back to the goal"),
        ("retrieve the cup from under the coffee maker", "bring the mug toward you off the machine",
         "draw the coffee cup out to the marked spot")),
    "disassemble-v3": _t(
        ("take the ring off the peg", "pick the nut off the peg", "lift the ring up and off the peg",
         "remove the nut from the peg", "disassemble the ring from the peg"),
        ("pull the washer up until it clears the post", "unmount the nut from the vertical pin",
         "free the ring from the peg by lifting it")),
    "door-lock-v3": _t(
        ("lock the door", "turn the lock on the door", "rotate the door lock down", "lock the safe door with the knob",
         "turn the door lock to locked"),
        ("secure the door by turning its latch", "twist the lock so the door is locked", "engage the door's lock")),
    "door-unlock-v3": _t(
        ("unlock the door", "turn the lock the other way to unlock the door", "rotate the door lock up",
         "unlock the safe door with the knob", "turn the door lock to unlocked"),
        ("release the latch on the door", "twist the lock so the door is free", "disengage the door's lock")),
    "hand-insert-v3": _t(
        ("put the puck in the hole", "insert the puck into the hole", "slide the puck into the hole in the table",
         "move the puck into the hole", "push the puck into the hole"),
        ("drop the disc into the opening", "guide the puck down into the cavity", "get the puck inside the hole")),
    "handle-press-side-v3": _t(
        ("press the handle down from the side", "push the side handle down", "press down on the handle from the side",
         "push the lever on the side down", "press the sideways handle down"),
        ("lower the handle that sticks out to the side", "force the side lever downward",
         "bring the side handle all the way down")),
    "handle-pull-side-v3": _t(
        ("pull the handle up from the side", "lift the side handle up", "pull up on the handle from the side",
         "raise the lever on the side", "pull the sideways handle up"),
        ("lift the handle that sticks out to the side", "draw the side lever upward",
         "bring the side handle all the way up")),
    "peg-unplug-side-v3": _t(
        ("unplug the peg", "pull the peg out of the hole", "remove the peg from the side hole",
         "pull the plug out sideways", "take the peg out of the socket"),
        ("withdraw the pin from its slot", "yank the plug free from the side", "extract the peg from the hole")),
    "pick-out-of-hole-v3": _t(
        ("pick the puck out of the hole", "lift the puck out of the hole", "take the puck out of the hole",
         "grab the puck from the hole and raise it", "remove the puck from the hole"),
        ("fish the disc up out of the opening", "retrieve the puck from inside the cavity",
         "raise the puck clear of the hole")),
    "pick-place-wall-v3": _t(
        ("pick up the puck and place it behind the wall", "grasp the puck and put it on the target past the wall",
         "lift the puck over the wall to the goal", "pick and place the puck on the other side of the wall",
         "move the puck over the wall onto the target"),
        ("carry the disc across the barrier to the marked spot", "take the puck up and over the wall to the goal",
         "transport the puck past the wall and set it down")),
    "plate-slide-back-v3": _t(
        ("slide the plate back", "push the plate back to the target", "slide the plate away from the goal area",
         "move the plate back by sliding it", "slide the plate back into place"),
        ("glide the dish backward to its spot", "pull the plate back along the table",
         "return the plate to the back position")),
    "plate-slide-back-side-v3": _t(
        ("slide the plate back from the side", "push the plate back sideways", "slide the plate back to the side target",
         "move the plate back to the side by sliding it", "slide the plate sideways back into place"),
        ("glide the dish back toward the side spot", "shift the plate back along the side",
         "return the plate to its place at the side")),
    "plate-slide-side-v3": _t(
        ("slide the plate to the side", "push the plate sideways into the goal", "slide the plate to the side target",
         "move the plate to the side by sliding it", "slide the plate sideways"),
        ("glide the dish over to the side", "shift the plate laterally onto the target",
         "nudge the plate along to the side spot")),
    "push-wall-v3": _t(
        ("push the puck past the wall to the goal", "slide the puck around the wall to the target",
         "push the puck to the goal behind the wall", "shove the puck around the wall",
         "move the puck past the wall by pushing it"),
        ("steer the disc around the barrier to the marked spot", "nudge the puck beyond the wall onto the target",
         "get the puck to the goal without lifting it over the wall")),
    "stick-pull-v3": _t(
        ("pull the bottle with the stick", "use the stick to pull the bottle", "pick up the stick and pull the bottle",
         "pull the thermos toward you with the stick", "grab the stick and pull the can"),
        ("hook the bottle with the rod and draw it back", "bring the flask closer using the stick as a tool",
         "drag the bottle to the target with the stick")),
    "sweep-v3": _t(
        ("sweep the puck off the table", "push the puck off the edge", "sweep the cube to the side",
         "slide the puck off the table edge", "sweep the block off the table"),
        ("brush the disc over the edge", "clear the puck off the tabletop", "knock the block off the side")),
}


def _key(task: str) -> str:
    task = str(task).strip().removeprefix("metaworld/")
    return task if task.endswith("-v3") else f"{task}-v3"


def instruction_tasks() -> list[str]:
    """Tasks that have instructions."""
    return sorted(INSTRUCTIONS)


def _entry(task: str) -> TaskInstructions:
    key = _key(task)
    if key not in INSTRUCTIONS:
        raise KeyError(f"no instructions for task {task!r}; tasks with instructions: {instruction_tasks()}")
    return INSTRUCTIONS[key]


def training_instructions(task: str) -> tuple[str, ...]:
    """Paraphrases demonstrations are recorded and trained with."""
    return _entry(task).train


def heldout_instructions(task: str) -> tuple[str, ...]:
    """Paraphrases reserved for evaluation; never used for recording or training."""
    return _entry(task).heldout


def sample_instruction(task: str, seed: int, split: str = "train") -> str:
    """One instruction for ``task``, chosen by ``seed`` (same task + seed + split -> same text)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    options = training_instructions(task) if split == "train" else heldout_instructions(task)
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(f"{_key(task)}/{split}/{int(seed)}").choice(options)
