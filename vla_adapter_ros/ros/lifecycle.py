"""What the package's lifecycle nodes share: cleanup, shutdown and error all release what
``configure`` built, and ``autostart`` (configure + activate at start-up)."""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn


class ReleasingLifecycleNode(LifecycleNode):
    """Subclasses implement ``_release()`` (back to unconfigured: stop work, drop what configure made)
    and keep ``lifecycle_state`` ("unconfigured", "inactive", "active", "finalized") for diagnostics."""

    lifecycle_state = "unconfigured"

    def _release(self) -> None:
        raise NotImplementedError

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle_state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured; a configure may retry

    def autostart(self) -> bool:
        """configure + activate; False when either failed."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)
