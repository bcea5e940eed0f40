"""Bottleneck adapters, PEFT-style (``tuners/<method>/{config,layer,model}.py``).

    from vla_adapter_ros.core.adapters import add_adapter, set_adapter, save_adapter, load_adapter
    add_adapter(policy, "pick", AdapterConfig(rank=16, task="pick-place-v3"))
    set_adapter(policy, "pick")          # None = pure backbone
    mark_only_adapter_trainable(policy, "pick")
    save_adapter(policy, "pick", "adapters/pick")
    print(parameter_report(policy))
"""

from ..config import AdapterConfig, LoraConfig, PrefixConfig
from ..tuners import TunerError, delete_adapter, mark_only_adapter_trainable, set_adapter
from .config import CONFIG_NAME, WEIGHTS_NAME, SavedAdapter
from .layer import AdapterLayer, Bottleneck
from .model import (
    AdapterLoadError,
    ParameterReport,
    adapter_state_dict,
    add_adapter,
    add_tuner,
    load_adapter,
    load_adapter_state_dict,
    parameter_report,
    save_adapter,
)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "AdapterConfig",
    "AdapterLayer",
    "AdapterLoadError",
    "Bottleneck",
    "LoraConfig",
    "PrefixConfig",
    "ParameterReport",
    "SavedAdapter",
    "TunerError",
    "adapter_state_dict",
    "add_adapter",
    "add_tuner",
    "delete_adapter",
    "load_adapter",
    "load_adapter_state_dict",
    "mark_only_adapter_trainable",
    "parameter_report",
    "save_adapter",
    "set_adapter",
]
