"""Simulated robot for demonstrations and evaluation: Meta-World v3 tasks with a camera.

``metaworld_env`` imports MuJoCo and Meta-World; ``instructions`` is plain Python.
"""
